//! The hub: channels, their history, and fan-out to the streams subscribed to them.
//!
//! Every event enters through [`Hub::deliver`] or [`Hub::deliver_at`] (called by the broker).
//! Two kinds of lock make resume exact while fan-outs of different channels run in parallel:
//! the hub lock (the sequence, the channel map) and one lock per channel (its history and
//! subscribers). The protocol:
//!
//! * taking an event in, the hub lock is held while its seq is assigned, its channels are
//!   locked, it is appended to their history, and it is queued for the streams subscribed to
//!   several channels (so those see ids strictly increasing across their channels); the hub lock
//!   is then released and the event is handed, under each channel's lock alone, to the writer
//!   threads that serve that channel's other streams (`writers`). The next event of the same
//!   channel waits for that lock, so each channel's streams get its events in order; other
//!   channels' events do not wait;
//! * [`Hub::subscribe`] takes the hub lock, then its channels' locks, copies the replay out of
//!   history and registers the stream (with its writer, through the same inbox as the events):
//!   an event of its channels is either already in history and handed on before the stream
//!   (its fan-out held the channel lock) or not yet given a seq (that needs the hub lock), so
//!   there is neither a gap nor a duplicate at the seam between replay and live events, however
//!   fast events keep coming;
//! * whoever takes several channel locks holds the hub lock while taking them, and nobody takes
//!   the hub lock while holding a channel lock: no deadlock.
//!
//! Locks are held only for appends and non-blocking queue pushes; nothing under them waits on
//! I/O.

mod channel;
mod clients;
mod event;
mod queue;
mod writers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::watch;

use channel::{offer, Channel, Shard};
pub use clients::{ClientHandle, ClientInfo, ClientRegistry, CloseReason};
pub use event::{Event, EventId, Origin};
pub use queue::{DirectWrite, Offered, StreamQueue};
use writers::Writers;

use crate::auth::Principal;
use crate::config::HistoryLimits;
use crate::metrics;

/// Why a resume point could not be honoured; sent to the client in the `reset` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The id is not of our format.
    Malformed,
    /// The id belongs to another sequence (an earlier run of this node) or lies in the future.
    Unknown,
    /// Events after the id have already left the history of at least one channel.
    Evicted,
}

impl ResetReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetReason::Malformed => "malformed_id",
            ResetReason::Unknown => "unknown_id",
            ResetReason::Evicted => "history_evicted",
        }
    }
}

/// What a new stream asks for.
pub struct SubscribeRequest {
    pub channels: Vec<Box<str>>,
    /// Only these event types, when set.
    pub types: Option<Box<[Box<str>]>>,
    /// The raw `Last-Event-ID` (header or query), if the client sent one.
    pub last_event_id: Option<String>,
    pub peer: Option<IpAddr>,
    /// Who opened it and with which rights (never the credential itself): for `/clients`, and
    /// to close the stream when a reload takes its rights away.
    pub principal: Option<Arc<Principal>>,
    /// Capacity of this stream's queue (`sse.client_queue`).
    pub queue: usize,
}

/// A registered stream: what to replay first; its live events arrive in `client.queue`.
pub struct Subscription {
    pub client: Arc<ClientHandle>,
    /// History after the resume point, in order, already filtered by type.
    pub replay: Vec<Arc<Event>>,
    /// Set when the resume point could not be honoured: send `reset`, then go live.
    pub reset: Option<ResetReason>,
    /// The last event of the sequence when the stream registered: every live event comes after
    /// it, so it is the resume point to give a client that gets `reset`.
    pub position: EventId,
    /// Removes the stream from the hub when dropped.
    pub guard: SubscriptionGuard,
}

/// Unregisters its stream from the hub on drop, whatever way the stream ends.
pub struct SubscriptionGuard {
    hub: Arc<Hub>,
    client: Arc<ClientHandle>,
}

impl Drop for SubscriptionGuard {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.client);
    }
}

struct State {
    /// The sequence the ids belong to (see [`EventId`]); changes only when a node joins a
    /// sequence the cluster restarted without it ([`Hub::rejoin`]).
    epoch: u64,
    channels: HashMap<Box<str>, Shard>,
    /// Seq of the last event delivered; the next must be greater.
    last_seq: u64,
    /// Resolves a channel's history limits (from the config's channel rules); replaced on
    /// reload.
    rules: HistoryRules,
    /// The latest ranges of seqs declared lost ([`Hub::skip_to`]), newest last and at most
    /// [`SKIPS_KEPT`]: a publisher waiting for its event learns whether it arrived or was
    /// skipped over.
    skipped: VecDeque<(u64, u64)>,
    /// Highest `evicted_upto` of the channels that were dropped from the map once idle: a channel
    /// without an entry may have had events up to here, so resuming below it is a `reset`.
    pruned_floor: u64,
}

impl State {
    /// The channel's entry, created with its configured limits when it has none. A new entry
    /// starts at `pruned_floor`: events below it may have been forgotten with an earlier entry,
    /// and counts its streams for each of `writers` writer threads.
    fn shard(&mut self, name: &str, writers: usize) -> Shard {
        if let Some(shard) = self.channels.get(name) {
            return shard.clone();
        }
        let shard = Channel::shard((self.rules)(name), self.pruned_floor, writers);
        self.channels.insert(name.into(), shard.clone());
        shard
    }

    /// The entries of `names`, each once (created when missing), in the order given.
    fn shards(&mut self, names: &[Box<str>], writers: usize) -> Vec<Shard> {
        let mut shards: Vec<Shard> = Vec::with_capacity(names.len());
        for name in names {
            let shard = self.shard(name, writers);
            if !shards.iter().any(|s| Arc::ptr_eq(s, &shard)) {
                shards.push(shard);
            }
        }
        shards
    }
}

/// Resolves the history limits of a channel by name.
pub type HistoryRules = Arc<dyn Fn(&str) -> HistoryLimits + Send + Sync>;

/// Lost ranges remembered for waiting publishers: far more than can happen within one
/// publish's wait.
const SKIPS_KEPT: usize = 64;

/// Channels, history and fan-out for one node. See the module doc for the ordering guarantees.
pub struct Hub {
    state: Mutex<State>,
    clients: ClientRegistry,
    writers: Writers,
    /// Bumped whenever a stream subscribes or leaves: on-demand sources wait on it to learn
    /// when their channels gain or lose their audience.
    subscriptions: watch::Sender<u64>,
    /// The seq of the last event taken in, for publishers on a shared broker that wait until
    /// their event has come back to this node.
    taken: watch::Sender<u64>,
}

impl Hub {
    /// A hub whose ids carry `epoch` (see [`EventId`]), with a writer thread per core.
    pub fn new(
        epoch: u64,
        rules: impl Fn(&str) -> HistoryLimits + Send + Sync + 'static,
    ) -> Arc<Hub> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hub::with_writers(epoch, rules, cores)
    }

    /// [`Hub::new`] with `writers` writer threads (at least one): how the fan-out's scaling
    /// with cores is measured (`benches/fanout.rs`).
    pub fn with_writers(
        epoch: u64,
        rules: impl Fn(&str) -> HistoryLimits + Send + Sync + 'static,
        writers: usize,
    ) -> Arc<Hub> {
        let writers = Writers::start(writers, writers::INBOX_EVENTS);
        Arc::new(Hub {
            state: Mutex::new(State {
                epoch,
                rules: Arc::new(rules),
                channels: HashMap::new(),
                last_seq: 0,
                skipped: VecDeque::new(),
                pruned_floor: 0,
            }),
            writers,
            clients: ClientRegistry::default(),
            subscriptions: watch::Sender::new(0),
            taken: watch::Sender::new(0),
        })
    }

    pub fn epoch(&self) -> u64 {
        self.state.lock().epoch
    }

    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    /// Takes new history limits (a config reload): every channel gets its limits from `rules`
    /// now, and what they no longer allow leaves history at once.
    pub fn set_history_rules(&self, rules: HistoryRules) {
        let now = Instant::now();
        let mut state = self.state.lock();
        for (name, shard) in state.channels.iter() {
            let mut channel = shard.lock();
            channel.limits = rules(name);
            channel.evict(now);
        }
        state.rules = rules;
    }

    /// Seq of the last event taken in.
    pub fn last_seq(&self) -> u64 {
        self.state.lock().last_seq
    }

    /// Takes in the next event of the sequence: the way events of this node's own sequence
    /// enter the hub (the memory broker).
    ///
    /// `make` builds the event for the seq the hub assigns (one more than the last); it runs under
    /// the hub lock, so sequence order, history order and delivery order are the same.
    pub fn deliver(&self, make: impl FnOnce(EventId) -> Arc<Event>) -> Arc<Event> {
        let state = self.state.lock();
        let seq = state.last_seq + 1;
        self.take_in(state, seq, make)
    }

    /// Takes in event `seq` of a sequence assigned elsewhere (a shared broker), which must be
    /// the next one: `None`, and nothing happens, for a seq already taken or one that would
    /// leave a gap (the broker fetches the missing events first, or calls [`Hub::skip_to`]).
    pub fn deliver_at(
        &self,
        seq: u64,
        make: impl FnOnce(EventId) -> Arc<Event>,
    ) -> Option<Arc<Event>> {
        let state = self.state.lock();
        (seq == state.last_seq + 1).then(|| self.take_in(state, seq, make))
    }

    /// Declares the events before `seq` lost for good (a shared broker's log no longer has
    /// them): the next event taken is `seq`, and a resume from before it gets `reset`
    /// (`history_evicted`) on every channel, not a silent gap.
    pub fn skip_to(&self, seq: u64) {
        let mut state = self.state.lock();
        if seq <= state.last_seq + 1 {
            return;
        }
        let lost_upto = seq - 1;
        let first_lost = state.last_seq + 1;
        if state.skipped.len() == SKIPS_KEPT {
            state.skipped.pop_front();
        }
        state.skipped.push_back((first_lost, lost_upto));
        state.last_seq = lost_upto;
        state.pruned_floor = state.pruned_floor.max(lost_upto);
        for shard in state.channels.values() {
            let mut channel = shard.lock();
            channel.evicted_upto = channel.evicted_upto.max(lost_upto);
        }
        drop(state);
        self.taken.send_replace(lost_upto);
    }

    /// Resolves once event `seq` has been taken in (`true`) or skipped over as lost (`false`).
    pub async fn taken(&self, seq: u64) -> bool {
        let mut taken = self.taken.subscribe();
        // The sender lives as long as the hub, which outlives this borrow.
        let _ = taken.wait_for(|&last| last >= seq).await;
        let state = self.state.lock();
        !state
            .skipped
            .iter()
            .any(|&(from, to)| (from..=to).contains(&seq))
    }

    /// Joins a sequence the cluster started without this node (its shared log was lost and
    /// another node began anew): ids carry `epoch` from now on and continue after `seq`. The
    /// history of the old sequence is dropped, since its ids mean nothing in the new one; open
    /// streams stay and receive the new sequence's events, and a resume from an old id gets
    /// `reset`.
    pub fn rejoin(&self, epoch: u64, seq: u64) {
        let mut state = self.state.lock();
        state.epoch = epoch;
        state.last_seq = seq;
        state.skipped.clear();
        state.pruned_floor = seq;
        for shard in state.channels.values() {
            let mut channel = shard.lock();
            channel.history.clear();
            channel.evicted_upto = seq;
        }
        drop(state);
        self.taken.send_replace(seq);
    }

    /// The events still in some channel's history with a seq above `after`, in order, at most
    /// the `max` newest: what this node can give back to a shared log that lost them.
    pub fn tail(&self, after: u64, max: usize) -> Vec<Arc<Event>> {
        let state = self.state.lock();
        let mut tail: Vec<Arc<Event>> = Vec::new();
        for shard in state.channels.values() {
            tail.extend(shard.lock().after(after).cloned());
        }
        drop(state);
        tail.sort_unstable_by_key(|e| e.id.seq);
        tail.dedup_by_key(|e| e.id.seq);
        let excess = tail.len().saturating_sub(max);
        tail.drain(..excess);
        tail
    }

    /// Takes event `seq` in, following the module doc's protocol; releases the hub lock
    /// midway.
    fn take_in(
        &self,
        mut state: MutexGuard<'_, State>,
        seq: u64,
        make: impl FnOnce(EventId) -> Arc<Event>,
    ) -> Arc<Event> {
        let id = EventId {
            epoch: state.epoch,
            seq,
        };
        let event = make(id);
        state.last_seq = id.seq;
        let now = event.accepted_at;
        let shards = state.shards(&event.channels, self.writers.count());
        let mut channels: Vec<_> = shards.iter().map(|shard| shard.lock()).collect();
        for channel in channels.iter_mut() {
            channel.history.push_back(event.clone());
            channel.evict(now);
        }
        // In history now: a publisher waiting for that (shared broker) is woken before the
        // streams below, so its answer does not queue behind their writes. Anyone who then
        // subscribes waits for these locks, so sees the fan-out done.
        self.taken.send_replace(seq);
        // A subscriber of several of the event's channels gets it once.
        let mut delivered: Option<HashSet<u64>> = (channels.len() > 1).then(HashSet::new);
        for channel in channels.iter_mut() {
            channel.multi.retain(|client_id, client| {
                if let Some(seen) = delivered.as_mut() {
                    if !seen.insert(*client_id) {
                        return true;
                    }
                }
                offer(client, &event)
            });
        }
        drop(state);
        for channel in channels.iter() {
            for (writer, &streams) in channel.on_writer.iter().enumerate() {
                if streams > 0 {
                    self.writers.event(writer, channel.id, &event);
                }
            }
        }
        drop(channels);
        event
    }

    /// Waits until every event taken in so far has reached the queues of its streams: for tests
    /// and benchmarks that read them.
    pub fn settle(&self) {
        self.writers.settle();
    }

    /// Registers a stream; see [`Subscription`].
    pub fn subscribe(self: &Arc<Self>, req: SubscribeRequest) -> Subscription {
        let client = self.clients.register(
            req.channels.into_boxed_slice(),
            req.types,
            req.peer,
            req.principal,
            req.queue,
        );
        let mut state = self.state.lock();
        let now = Instant::now();
        let shards = state.shards(&client.channels, self.writers.count());
        let mut channels: Vec<_> = shards.iter().map(|shard| shard.lock()).collect();
        for channel in channels.iter_mut() {
            channel.evict(now);
            self.add_subscriber(channel, &client);
        }
        let (replay, reset) = match req.last_event_id.as_deref() {
            None => (Vec::new(), None),
            Some(raw) => match resume_point(raw, &state, &channels) {
                Err(reason) => (Vec::new(), Some(reason)),
                Ok(after) => {
                    let mut replay = Vec::new();
                    for channel in &channels {
                        replay.extend(
                            channel
                                .after(after)
                                .filter(|e| client.wants(&e.event_type))
                                .cloned(),
                        );
                    }
                    if channels.len() > 1 {
                        replay.sort_unstable_by_key(|e| e.id.seq);
                        replay.dedup_by_key(|e| e.id.seq);
                    }
                    (replay, None)
                }
            },
        };
        let position = EventId {
            epoch: state.epoch,
            seq: state.last_seq,
        };
        drop(channels);
        drop(state);
        self.subscriptions.send_modify(|n| *n += 1);
        if reset.is_some() {
            metrics::RESETS.inc();
        }
        metrics::REPLAYED_EVENTS.inc_by(replay.len() as u64);
        Subscription {
            client: client.clone(),
            replay,
            reset,
            position,
            guard: SubscriptionGuard {
                hub: self.clone(),
                client,
            },
        }
    }

    fn unsubscribe(&self, client: &ClientHandle) {
        // The entries are taken under the hub lock, then each channel is locked alone.
        let shards: Vec<Shard> = {
            let state = self.state.lock();
            client
                .channels
                .iter()
                .filter_map(|name| state.channels.get(name).cloned())
                .collect()
        };
        for shard in shards {
            self.remove_subscriber(&mut shard.lock(), client);
        }
        self.clients.unregister(client.id);
        self.subscriptions.send_modify(|n| *n += 1);
    }

    /// Adds a stream to a channel it subscribes to: to the channel's map when it subscribes to
    /// several, else to its writer.
    fn add_subscriber(&self, channel: &mut Channel, client: &Arc<ClientHandle>) {
        if client.channels.len() > 1 {
            channel.multi.insert(client.id, client.clone());
        } else {
            channel.on_writer[self.writers.of(client.id)] += 1;
            self.writers.subscribe(channel.id, client);
        }
    }

    /// Undoes [`Hub::add_subscriber`].
    fn remove_subscriber(&self, channel: &mut Channel, client: &ClientHandle) {
        if client.channels.len() > 1 {
            channel.multi.remove(&client.id);
        } else {
            let streams = &mut channel.on_writer[self.writers.of(client.id)];
            *streams = streams.saturating_sub(1);
            self.writers.unsubscribe(channel.id, client);
        }
    }

    /// Whether any stream subscribes to a channel `matches` accepts.
    pub fn has_subscribers(&self, matches: impl Fn(&str) -> bool) -> bool {
        let state = self.state.lock();
        state
            .channels
            .iter()
            .any(|(name, shard)| matches(name) && shard.lock().has_subscribers())
    }

    /// Whether any stream subscribes to `channel`.
    pub fn has_subscribers_on(&self, channel: &str) -> bool {
        let state = self.state.lock();
        state
            .channels
            .get(channel)
            .is_some_and(|shard| shard.lock().has_subscribers())
    }

    /// Changes whenever a stream subscribes or leaves; see [`Hub::has_subscribers`].
    pub fn watch_subscriptions(&self) -> watch::Receiver<u64> {
        self.subscriptions.subscribe()
    }

    /// Applies the age limit to every channel and forgets channels with neither history nor
    /// subscribers, so memory follows what is in use. Run periodically by the janitor.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut state = self.state.lock();
        let mut floor = state.pruned_floor;
        state.channels.retain(|_, shard| {
            let mut channel = shard.lock();
            channel.evict(now);
            if channel.is_idle() {
                floor = floor.max(channel.evicted_upto);
                false
            } else {
                true
            }
        });
        state.pruned_floor = floor;
    }

    /// Counts for `/stats`: channels, retained events.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.state.lock();
        let events = state
            .channels
            .values()
            .map(|c| c.lock().history.len())
            .sum();
        (state.channels.len(), events)
    }

    /// How often [`Hub::sweep`] should run: often enough that aged events leave memory promptly.
    pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
}

/// The seq after which to replay, or why that is impossible. `channels` are the stream's,
/// locked.
fn resume_point(
    raw: &str,
    state: &State,
    channels: &[MutexGuard<'_, Channel>],
) -> Result<u64, ResetReason> {
    let id = EventId::parse(raw).ok_or(ResetReason::Malformed)?;
    if id.epoch != state.epoch || id.seq > state.last_seq {
        return Err(ResetReason::Unknown);
    }
    if channels.iter().any(|c| c.evicted_upto > id.seq) {
        return Err(ResetReason::Evicted);
    }
    Ok(id.seq)
}

#[cfg(test)]
mod tests;
