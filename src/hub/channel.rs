//! One channel: its history and its subscribers, behind a lock of its own (see the hub's module
//! doc for who takes it when).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::clients::{ClientHandle, CloseReason};
use super::event::Event;
use super::queue::Offered;
use crate::config::HistoryLimits;

/// A channel behind its own lock, shared by the hub's map and whoever is fanning out to it.
pub(super) type Shard = Arc<Mutex<Channel>>;

/// Channel ids are never reused, so a writer never mistakes a channel made anew for the one
/// it replaced.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(super) struct Channel {
    /// How the writers know this channel.
    pub id: u64,
    /// Retained events, oldest first.
    pub history: VecDeque<Arc<Event>>,
    pub limits: HistoryLimits,
    /// Highest seq that has left this channel's history: a resume from below it has lost events.
    pub evicted_upto: u64,
    /// How many streams subscribed to this channel alone each writer serves: an event goes to
    /// the writers with any. Those streams are served by the writers alone, so fan-outs of
    /// different channels run in parallel.
    pub on_writer: Box<[u32]>,
    /// Streams subscribed to several channels: served by the publisher under the hub lock, so
    /// each sees the events of all its channels in sequence order.
    pub multi: HashMap<u64, Arc<ClientHandle>>,
}

impl Channel {
    pub fn shard(limits: HistoryLimits, evicted_upto: u64, writers: usize) -> Shard {
        Arc::new(Mutex::new(Channel {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            history: VecDeque::new(),
            limits,
            evicted_upto,
            on_writer: vec![0; writers].into(),
            multi: HashMap::new(),
        }))
    }

    /// Drops events over the count limit or older than the age limit.
    pub fn evict(&mut self, now: Instant) {
        while let Some(oldest) = self.history.front() {
            let too_many = self.history.len() > self.limits.max_events;
            let too_old = now.saturating_duration_since(oldest.accepted_at) > self.limits.max_age;
            if !(too_many || too_old) {
                break;
            }
            self.evicted_upto = oldest.id.seq;
            self.history.pop_front();
        }
    }

    /// The events of this channel's history after `seq`, oldest first.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &Arc<Event>> {
        let start = self.history.partition_point(|e| e.id.seq <= seq);
        self.history.range(start..)
    }

    pub fn has_subscribers(&self) -> bool {
        !self.multi.is_empty() || self.on_writer.iter().any(|&n| n > 0)
    }

    pub fn is_idle(&self) -> bool {
        self.history.is_empty() && !self.has_subscribers()
    }
}

/// Offers an event to a stream of several channels (queued for its task, never written here:
/// the caller holds the hub lock). Returns whether to keep the subscriber: a full queue means
/// the client cannot keep up, so it is told to close (it will resume from history) rather than
/// slowing the hub or buffering without bound.
pub(super) fn offer(client: &ClientHandle, event: &Arc<Event>) -> bool {
    if !client.wants(&event.event_type) {
        return true;
    }
    match client.queue.offer(std::slice::from_ref(event), None) {
        Offered::Written | Offered::Queued => true,
        Offered::Full => {
            client.close(CloseReason::SlowConsumer);
            false
        }
        Offered::Gone => false,
    }
}
