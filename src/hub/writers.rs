//! The writer threads: one per core, each serving a share of the streams subscribed to a single
//! channel, so that a fan-out's writes run on every core at once and a publisher's fan-out is one
//! hand-off per writer, however many streams listen.
//!
//! A channel hands each event, under its lock, to the writers that have streams on it; a
//! stream's subscription and its end reach its writer the same way. A writer takes its inbox in
//! order, so a stream gets exactly the events of its channel that came after it subscribed (the
//! ones before are in its replay), in order. It offers each event (or the run of events of one
//! channel waiting together) to each of its streams on the channel: written to the socket at
//! once for a client that keeps up, else queued for the stream's task ([`super::queue`]).
//!
//! An inbox holds at most [`INBOX_EVENTS`] events. A writer that far behind has left every one of
//! its streams on that channel further behind than a stream's queue allows: the event is not
//! taken, and those streams are closed as slow consumers when the writer comes to the loss (they
//! resume from history), as a stream whose own queue overflows is. Subscriptions and their ends
//! are always taken: there are two per stream, and streams are bounded by the connection limits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::clients::{ClientHandle, CloseReason};
use super::event::Event;
use super::queue::Offered;
use crate::metrics;

/// Most events an inbox holds; see the module doc.
pub const INBOX_EVENTS: usize = 16_384;

/// The writer threads of one hub; they stop when it is dropped.
pub struct Writers {
    inboxes: Box<[Arc<Inbox>]>,
    /// Most events an inbox holds ([`INBOX_EVENTS`] but in tests).
    inbox_events: usize,
}

/// A writer's inbox: what the channels hand it, in order.
struct Inbox {
    queue: Mutex<Queued>,
    ready: Condvar,
}

#[derive(Default)]
struct Queued {
    messages: VecDeque<Message>,
    /// Events among `messages`.
    events: usize,
    /// Channels with a loss notice among `messages` and no subscription after it: a further
    /// loss adds no second notice, so notices are bounded by channels and subscriptions.
    lost: HashSet<u64>,
    stopped: bool,
}

enum Message {
    Event(u64, Arc<Event>),
    Subscribe(u64, Arc<ClientHandle>),
    /// The stream by its address: never dereferenced, and never another stream's, since a
    /// stream's memory is freed only after its unsubscription is handed over, and a later
    /// stream at the same address is handed over after that.
    Unsubscribe(u64, usize),
    /// An event of the channel was not taken (the inbox was full).
    Lost(u64),
    /// Answered once everything before it is handed on (see [`Writers::settle`]).
    Settle(std::sync::mpsc::SyncSender<()>),
}

impl Writers {
    /// Starts `count` writer threads (at least one), each inbox holding at most `inbox_events`
    /// events.
    pub fn start(count: usize, inbox_events: usize) -> Writers {
        let inboxes: Box<[Arc<Inbox>]> = (0..count.max(1))
            .map(|_| {
                Arc::new(Inbox {
                    queue: Mutex::new(Queued::default()),
                    ready: Condvar::new(),
                })
            })
            .collect();
        for (i, inbox) in inboxes.iter().enumerate() {
            let inbox = inbox.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sse-writer-{i}"))
                .spawn(move || Writer::default().run(&inbox));
            if let Err(e) = spawned {
                // Without its thread an inbox is never read: nothing can run at all.
                panic!("cannot start a writer thread: {e}");
            }
        }
        Writers {
            inboxes,
            inbox_events,
        }
    }

    /// How many writers there are: a channel counts its streams per writer.
    pub fn count(&self) -> usize {
        self.inboxes.len()
    }

    /// The writer that serves a stream.
    pub fn of(&self, client_id: u64) -> usize {
        (client_id % self.inboxes.len() as u64) as usize
    }

    /// Hands an event of `channel` to writer `writer`.
    pub fn event(&self, writer: usize, channel: u64, event: &Arc<Event>) {
        let inbox = &self.inboxes[writer];
        let mut queue = inbox.queue.lock();
        let message = if queue.events < self.inbox_events {
            queue.events += 1;
            Message::Event(channel, event.clone())
        } else if queue.lost.insert(channel) {
            Message::Lost(channel)
        } else {
            return;
        };
        inbox.push(queue, message);
    }

    /// Gives a stream of `channel` to its writer: it gets the channel's events handed over from
    /// now on.
    pub fn subscribe(&self, channel: u64, client: &Arc<ClientHandle>) {
        let inbox = &self.inboxes[self.of(client.id)];
        let mut queue = inbox.queue.lock();
        // A loss after this subscription must close this stream too: it needs a notice of its own.
        queue.lost.remove(&channel);
        inbox.push(queue, Message::Subscribe(channel, client.clone()));
    }

    /// Waits until every writer has handed on everything given to it before this call: after
    /// it, an event taken in is in the queue of every stream it was for (or written to it).
    /// For tests and benchmarks that read streams' queues.
    pub fn settle(&self) {
        let (done, settled) = std::sync::mpsc::sync_channel(self.inboxes.len());
        for inbox in self.inboxes.iter() {
            inbox.push(inbox.queue.lock(), Message::Settle(done.clone()));
        }
        drop(done);
        // Ends early only if a writer is gone, and then there is nothing left to wait for.
        while settled.recv().is_ok() {}
    }

    /// Takes a stream of `channel` back from its writer.
    pub fn unsubscribe(&self, channel: u64, client: &ClientHandle) {
        let inbox = &self.inboxes[self.of(client.id)];
        inbox.push(
            inbox.queue.lock(),
            Message::Unsubscribe(channel, std::ptr::from_ref(client) as usize),
        );
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        for inbox in self.inboxes.iter() {
            inbox.queue.lock().stopped = true;
            inbox.ready.notify_one();
        }
    }
}

impl Inbox {
    fn push(&self, mut queue: parking_lot::MutexGuard<'_, Queued>, message: Message) {
        let was_empty = queue.messages.is_empty();
        queue.messages.push_back(message);
        drop(queue);
        if was_empty {
            self.ready.notify_one();
        }
    }

    /// Moves the events of `channel` at the head of the inbox into `batch`, within the batch's
    /// limits (see [`take_batch`]): how a writer amid a walk takes up events that came since it
    /// began. It stops at any other message.
    fn pull(&self, channel: u64, batch: &mut Vec<Arc<Event>>) {
        let mut queue = self.queue.lock();
        let taken = take_batch(channel, &mut queue.messages, batch);
        queue.events -= taken;
    }

    /// Waits for messages and takes them all; `None` once the hub is gone.
    fn take(&self, into: &mut VecDeque<Message>) -> Option<()> {
        let mut queue = self.queue.lock();
        while queue.messages.is_empty() && !queue.stopped {
            self.ready.wait(&mut queue);
        }
        if queue.stopped {
            return None;
        }
        std::mem::swap(&mut queue.messages, into);
        queue.events = 0;
        queue.lost.clear();
        Some(())
    }
}

/// One writer thread's state: its streams, by channel.
#[derive(Default)]
struct Writer {
    streams: HashMap<u64, Vec<Stream>>,
}

/// A stream as its writer keeps it: packed in a vector it walks for every event, with what it
/// needs to skip a stream without touching it.
struct Stream {
    client: Arc<ClientHandle>,
    /// Whether it asked for certain event types only.
    filtered: bool,
    /// How many events of the batch being walked it was offered.
    offered: usize,
}

/// Most events joined into one chunk, and the size past which no more are joined.
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 64 << 10;

/// Moves the events of `channel` that come next in `messages` into `batch` (which holds the
/// first), up to [`MAX_BATCH`] events and about [`MAX_BATCH_BYTES`]: a writer that fell behind
/// catches up with one write per stream for several events, as a stream's task does. It stops
/// at any other message, so a stream that subscribes in between gets exactly what follows.
/// Returns how many it moved.
fn take_batch(
    channel: u64,
    messages: &mut VecDeque<Message>,
    batch: &mut Vec<Arc<Event>>,
) -> usize {
    let mut bytes: usize = batch.iter().map(|e| e.frame.len()).sum();
    let mut taken = 0;
    while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
        match messages.front() {
            Some(Message::Event(next, _)) if *next == channel => {}
            _ => break,
        }
        if let Some(Message::Event(_, event)) = messages.pop_front() {
            bytes += event.frame.len();
            batch.push(event);
            taken += 1;
        }
    }
    taken
}

/// Streams written between two readings of the clock (for the delivery latency): about 0.2 ms
/// of writes, far below the histogram's finest bucket.
const CLOCK_EVERY: usize = 32;

/// Streams written between two looks into the inbox for events that came during a walk: about
/// 2 ms of writes, one uncontended lock.
const PICK_UP_EVERY: usize = 256;

impl Writer {
    fn run(mut self, inbox: &Inbox) {
        let mut messages = VecDeque::new();
        let mut batch = Vec::new();
        let mut latency = metrics::DELIVERY_LATENCY.local();
        while inbox.take(&mut messages).is_some() {
            while let Some(message) = messages.pop_front() {
                match message {
                    Message::Event(channel, event) => {
                        batch.push(event);
                        take_batch(channel, &mut messages, &mut batch);
                        // Events still come after the batch: none may be taken out of turn.
                        let pick_up = messages.is_empty().then_some(inbox);
                        self.fan_out(channel, &mut batch, pick_up, &mut latency);
                        batch.clear();
                        latency.flush();
                    }
                    Message::Subscribe(channel, client) => {
                        let filtered = client.types.is_some();
                        self.streams.entry(channel).or_default().push(Stream {
                            client,
                            filtered,
                            offered: 0,
                        });
                    }
                    Message::Unsubscribe(channel, client) => {
                        if let Some(streams) = self.streams.get_mut(&channel) {
                            // By address: the walk reads no stream's memory.
                            if let Some(at) = streams
                                .iter()
                                .position(|s| Arc::as_ptr(&s.client) as usize == client)
                            {
                                streams.swap_remove(at);
                            }
                            if streams.is_empty() {
                                self.streams.remove(&channel);
                            }
                        }
                    }
                    Message::Lost(channel) => {
                        for stream in self.streams.remove(&channel).unwrap_or_default() {
                            stream.client.close(CloseReason::SlowConsumer);
                        }
                    }
                    Message::Settle(done) => {
                        let _ = done.send(());
                    }
                }
            }
        }
    }

    /// Offers `batch` (events of `channel`, in order) to every stream of the channel this writer
    /// serves: to a stream that takes them all, as one chunk of their frames joined once.
    ///
    /// A walk over thousands of streams takes a while. With `pick_up`, events of the channel
    /// that arrive meanwhile join the batch every [`PICK_UP_EVERY`] streams: the streams not yet
    /// visited get them on this walk, and another pass gives them to the streams visited before,
    /// instead of every stream waiting for the next walk.
    fn fan_out(
        &mut self,
        channel: u64,
        batch: &mut Vec<Arc<Event>>,
        pick_up: Option<&Inbox>,
        latency: &mut prometheus::local::LocalHistogram,
    ) {
        let Some(streams) = self.streams.get_mut(&channel) else {
            return;
        };
        for stream in streams.iter_mut() {
            stream.offered = 0;
        }
        // The frames of batch[from..to], joined once for every stream that takes just those, and
        // lent to each stream, not cloned: a clone of one event's frame bumps a reference count
        // that the other writers bump too, and that cache line would cross the cores at every
        // stream.
        let mut joined: Vec<(usize, usize, Bytes)> = Vec::new();
        let mut written = 0;
        let mut now = Instant::now();
        let mut visited = 0usize;
        loop {
            let before = batch.len();
            streams.retain_mut(|stream| {
                if visited.is_multiple_of(PICK_UP_EVERY) {
                    if let Some(inbox) = pick_up {
                        inbox.pull(channel, batch);
                    }
                }
                visited += 1;
                if visited.is_multiple_of(CLOCK_EVERY) {
                    now = Instant::now();
                }
                let (from, to) = (stream.offered, batch.len());
                if from == to {
                    return true;
                }
                stream.offered = to;
                let events = &batch[from..to];
                let wanted: Vec<Arc<Event>>;
                let own_frames: Bytes;
                let (events, frames) = if stream.filtered {
                    wanted = events
                        .iter()
                        .filter(|e| stream.client.wants(&e.event_type))
                        .cloned()
                        .collect();
                    if wanted.is_empty() {
                        return true;
                    }
                    own_frames = Event::frames_of(&wanted);
                    (&wanted[..], &own_frames)
                } else {
                    // Newest first: the streams of a pass mostly take the range just joined.
                    let at = match joined.iter().rposition(|(f, t, _)| (*f, *t) == (from, to)) {
                        Some(at) => at,
                        None => {
                            joined.push((from, to, Event::frames_of(events)));
                            joined.len() - 1
                        }
                    };
                    (events, &joined[at].2)
                };
                match stream.client.queue.offer(events, Some((frames, now))) {
                    Offered::Written => {
                        for event in events {
                            latency.observe(
                                now.saturating_duration_since(event.accepted_at)
                                    .as_secs_f64(),
                            );
                        }
                        written += events.len() as u64;
                        true
                    }
                    Offered::Queued => true,
                    Offered::Full => {
                        stream.client.close(CloseReason::SlowConsumer);
                        false
                    }
                    Offered::Gone => false,
                }
            });
            // The streams visited before the batch last grew lack its newest events.
            if batch.len() == before {
                break;
            }
        }
        metrics::EVENTS_DELIVERED.inc_by(written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::clients::ClientRegistry;
    use crate::hub::event::EventId;

    /// Everything in the stream's queue.
    fn queued(client: &ClientHandle) -> Vec<u64> {
        let mut batch = Vec::new();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let _ = client.queue.poll_recv(&mut cx, &mut batch, usize::MAX);
        batch.iter().map(|e| e.id.seq).collect()
    }

    fn event(seq: u64) -> Arc<Event> {
        Event::new(EventId { epoch: 1, seq }, "m", vec!["c".into()].into(), "x")
    }

    /// Holds writer 0 until the returned receiver is read: what is handed to it meanwhile
    /// waits in its inbox.
    fn hold(writers: &Writers) -> std::sync::mpsc::Receiver<()> {
        let (held, release) = std::sync::mpsc::sync_channel(0);
        let inbox = &writers.inboxes[0];
        inbox.push(inbox.queue.lock(), Message::Settle(held));
        release
    }

    /// Events a writer takes together are offered together, but never across a subscription:
    /// a stream that subscribed between two events gets only the second.
    #[test]
    fn a_batch_of_events_stops_at_a_subscription() {
        let writers = Writers::start(1, 100);
        let registry = ClientRegistry::default();
        let stream = || registry.register(vec!["c".into()].into(), None, None, None, 100);
        let (early, late) = (stream(), stream());
        writers.subscribe(7, &early);
        let release = hold(&writers);
        writers.event(0, 7, &event(1));
        writers.event(0, 7, &event(2));
        writers.subscribe(7, &late);
        writers.event(0, 7, &event(3));
        writers.event(0, 8, &event(4));
        release.recv().unwrap();
        writers.settle();
        assert_eq!(queued(&early), [1, 2, 3]);
        assert_eq!(queued(&late), [3]);
    }

    /// Events that did not fit a writer's inbox close the streams that missed them as slow
    /// consumers, and only those: a stream that subscribed after the loss stays.
    #[test]
    fn a_full_inbox_closes_the_streams_that_missed_an_event() {
        let writers = Writers::start(1, 2);
        let registry = ClientRegistry::default();
        let stream = |registry: &ClientRegistry| {
            registry.register(vec!["c".into()].into(), None, None, None, 100)
        };
        let (before, after) = (stream(&registry), stream(&registry));
        writers.subscribe(7, &before);
        let release = hold(&writers);
        for seq in 1..=4 {
            writers.event(0, 7, &event(seq));
        }
        writers.subscribe(7, &after);
        release.recv().unwrap();
        // Until the writer has taken its inbox, events 1 and 2 still fill it, and event 5
        // would be lost too.
        writers.settle();
        writers.event(0, 7, &event(5));
        writers.settle();
        assert_eq!(
            before.close_reason(),
            Some(CloseReason::SlowConsumer),
            "missed events 3 and 4"
        );
        assert_eq!(after.close_reason(), None, "subscribed after the loss");
        assert_eq!(queued(&after), [5]);
        assert_eq!(queued(&before), [1, 2], "nothing after the loss");
    }
}
