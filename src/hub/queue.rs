//! A stream's queue: the events handed to it that its task has not written yet, and, once its
//! connection is a plain socket, the socket's sending half, so that the fan-out writes an event
//! straight to a client that keeps up instead of queueing it and waking the stream's task.
//!
//! A direct write happens only when the task holds nothing back: the queue is empty, the task
//! has no events taken off it that it is still writing, and nothing of an earlier chunk waits
//! in the socket. Otherwise the event is queued behind the rest, so a stream's bytes always go
//! out in order. A direct write the socket takes only in part leaves the rest to the task,
//! which is woken to finish it (waiting for the socket under its write timeout).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::Mutex;

use super::event::{Event, EventId};

/// The sending half of a stream's connection, as the fan-out and the stream's task share it.
/// Every method only tries: nothing waits for the socket.
pub trait DirectWrite: Send {
    /// Sends what an earlier chunk left unsent; whether all of it is out now.
    fn flush(&mut self) -> io::Result<bool>;
    /// Sends `data` as one chunk of the response body (the last one when `end`); what the
    /// socket does not take now is kept, to go first on the next [`DirectWrite::flush`]. Called
    /// only when nothing is left unsent.
    fn send_chunk(&mut self, data: &[u8], end: bool) -> io::Result<()>;
    /// [`DirectWrite::send_chunk`] for the fan-out, which never waits for the socket: it may
    /// skip the bookkeeping a waiter needs (the stream's task does that when it takes over).
    fn offer_chunk(&mut self, data: &[u8]) -> io::Result<()>;
    /// Whether part of a chunk waits to be sent.
    fn has_unsent(&self) -> bool;
}

/// What became of an event offered to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Written to the client's socket at once.
    Written,
    /// Queued for the stream's task.
    Queued,
    /// The queue is full: the client cannot keep up.
    Full,
    /// The stream is ending or its connection failed: it takes nothing more.
    Gone,
}

/// See the module doc.
pub struct StreamQueue {
    state: Mutex<State>,
}

struct State {
    events: VecDeque<Arc<Event>>,
    capacity: usize,
    /// The stream task's waker, while it waits for events.
    waker: Option<Waker>,
    direct: Option<Box<dyn DirectWrite>>,
    /// The task has taken events off the queue and not yet come back for more: it is still
    /// writing them (or, at the start, the stream's opening), so nothing may overtake them.
    held: bool,
    /// A direct write failed: the connection is gone.
    broken: bool,
    /// The stream is ending: nothing more is queued or written by the fan-out.
    ended: bool,
    /// The last event taken off the queue or written directly, and when the fan-out last wrote.
    last_id: Option<EventId>,
    last_direct_write: Option<Instant>,
    /// Events written to this stream, by the fan-out or the task (for `/clients`).
    sent: u64,
}

impl StreamQueue {
    /// A queue of at most `capacity` events (at least one), held until the task first asks.
    pub fn new(capacity: usize) -> StreamQueue {
        StreamQueue {
            state: Mutex::new(State {
                events: VecDeque::new(),
                capacity: capacity.max(1),
                waker: None,
                direct: None,
                held: true,
                broken: false,
                ended: false,
                last_id: None,
                last_direct_write: None,
                sent: 0,
            }),
        }
    }

    /// Hands the connection's sending half over: from now on the task writes through
    /// [`StreamQueue::with_direct`], and the fan-out may write events directly.
    pub fn go_direct(&self, direct: Box<dyn DirectWrite>) {
        self.state.lock().direct = Some(direct);
    }

    /// Takes the connection's sending half back (the stream is over): the connection closes
    /// with the stream, not whenever the last holder of this queue lets go of it.
    pub fn take_direct(&self) -> Option<Box<dyn DirectWrite>> {
        self.state.lock().direct.take()
    }

    /// Runs `f` on the connection's sending half under the queue's lock, so that nothing the
    /// fan-out writes comes between. `Err` when the fan-out found the connection broken.
    pub fn with_direct<R>(
        &self,
        f: impl FnOnce(&mut dyn DirectWrite) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut state = self.state.lock();
        if state.broken {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        match state.direct.as_deref_mut() {
            Some(direct) => f(direct),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Offers events, in order. With `direct` (their frames joined, and the fan-out's clock
    /// reading), they are written to the socket at once as one chunk when the stream is direct
    /// and holds nothing back; else they are queued, all or (when they do not fit) none.
    pub fn offer(&self, events: &[Arc<Event>], direct: Option<(&[u8], Instant)>) -> Offered {
        let mut state = self.state.lock();
        if state.ended || state.broken {
            return Offered::Gone;
        }
        if let Some((frames, at)) = direct {
            if let Some(written) = state.write_directly(events, frames, at) {
                return written;
            }
        }
        if state.events.len() + events.len() > state.capacity {
            return Offered::Full;
        }
        state.events.extend(events.iter().cloned());
        let waker = state.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Offered::Queued
    }

    /// Takes up to `max` queued events into `batch`, waiting while there are none. Resolves
    /// with an empty batch when there is nothing to take but the connection needs the task:
    /// part of a direct write is left to send, or the connection broke (the task's next write
    /// finds out which).
    pub fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        batch: &mut Vec<Arc<Event>>,
        max: usize,
    ) -> Poll<()> {
        let mut state = self.state.lock();
        let needs_task = state.broken || state.direct.as_ref().is_some_and(|d| d.has_unsent());
        if state.events.is_empty() && !needs_task {
            // Whatever the task took before is written: the fan-out may write directly again.
            state.held = false;
            if !state
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                state.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        let n = state.events.len().min(max);
        batch.extend(state.events.drain(..n));
        if let Some(last) = batch.last() {
            state.last_id = Some(last.id);
        }
        state.held = true;
        Poll::Ready(())
    }

    /// Ends the stream's intake, and takes what is still queued.
    pub fn end(&self) -> Vec<Arc<Event>> {
        let mut state = self.state.lock();
        state.ended = true;
        let rest: Vec<Arc<Event>> = state.events.drain(..).collect();
        if let Some(last) = rest.last() {
            state.last_id = Some(last.id);
        }
        rest
    }

    /// The last event this stream was given (taken off the queue or written directly), if any.
    pub fn last_id(&self) -> Option<EventId> {
        self.state.lock().last_id
    }

    /// Counts events the task wrote.
    pub fn count_sent(&self, events: usize) {
        self.state.lock().sent += events as u64;
    }

    /// Events written to this stream so far.
    pub fn sent(&self) -> u64 {
        self.state.lock().sent
    }

    /// When the fan-out last wrote to this stream directly.
    pub fn last_direct_write(&self) -> Option<Instant> {
        self.state.lock().last_direct_write
    }
}

impl std::fmt::Debug for StreamQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("StreamQueue")
            .field("queued", &state.events.len())
            .field("direct", &state.direct.is_some())
            .field("held", &state.held)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Writes `frames` (those of `events`) straight to the socket if the stream is direct and
    /// holds nothing back; `None` when they must be queued instead.
    fn write_directly(
        &mut self,
        events: &[Arc<Event>],
        frames: &[u8],
        at: Instant,
    ) -> Option<Offered> {
        if self.held || !self.events.is_empty() {
            return None;
        }
        let direct = self.direct.as_deref_mut()?;
        if direct.has_unsent() {
            return None;
        }
        if direct.offer_chunk(frames).is_err() {
            self.broken = true;
        } else {
            self.last_id = events.last().map(|e| e.id).or(self.last_id);
            self.last_direct_write = Some(at);
            self.sent += events.len() as u64;
            if !direct.has_unsent() {
                return Some(Offered::Written);
            }
        }
        // The task finishes what the socket did not take, or learns that it broke.
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
        Some(if self.broken {
            Offered::Gone
        } else {
            Offered::Written
        })
    }
}
