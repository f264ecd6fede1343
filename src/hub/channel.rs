//! One channel: its history and its subscribers, behind a lock of its own (see the hub's module
//! doc for who takes it when).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::clients::{ClientHandle, CloseReason};
use super::event::Event;
use crate::config::HistoryLimits;

/// A channel behind its own lock, shared by the hub's map and whoever is fanning out to it.
pub(super) type Shard = Arc<Mutex<Channel>>;

/// A subscriber as a channel sees it.
pub(super) struct Subscriber {
    pub queue: mpsc::Sender<Arc<Event>>,
    pub client: Arc<ClientHandle>,
}

pub(super) struct Channel {
    /// Retained events, oldest first.
    pub history: VecDeque<Arc<Event>>,
    pub limits: HistoryLimits,
    /// Highest seq that has left this channel's history: a resume from below it has lost events.
    pub evicted_upto: u64,
    /// Streams subscribed to this channel alone: served under this channel's lock only, so
    /// fan-outs of different channels run in parallel.
    pub single: HashMap<u64, Subscriber>,
    /// Streams subscribed to several channels: served under the hub lock too, so each sees the
    /// events of all its channels in sequence order.
    pub multi: HashMap<u64, Subscriber>,
}

impl Channel {
    pub fn shard(limits: HistoryLimits, evicted_upto: u64) -> Shard {
        Arc::new(Mutex::new(Channel {
            history: VecDeque::new(),
            limits,
            evicted_upto,
            single: HashMap::new(),
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

    /// The subscriber map a client belongs in.
    pub fn subscribers_of(&mut self, client: &ClientHandle) -> &mut HashMap<u64, Subscriber> {
        if client.channels.len() > 1 {
            &mut self.multi
        } else {
            &mut self.single
        }
    }

    pub fn has_subscribers(&self) -> bool {
        !(self.single.is_empty() && self.multi.is_empty())
    }

    pub fn is_idle(&self) -> bool {
        self.history.is_empty() && !self.has_subscribers()
    }
}

/// Offers an event to one subscriber without waiting. Returns whether to keep the subscriber:
/// a full queue means the client cannot keep up, so it is told to close (it will resume from
/// history) rather than slowing the hub or buffering without bound.
pub(super) fn offer(sub: &Subscriber, event: &Arc<Event>) -> bool {
    if !sub.client.wants(&event.event_type) {
        return true;
    }
    match sub.queue.try_send(event.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            sub.client.close(CloseReason::SlowConsumer);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}
