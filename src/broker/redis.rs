//! The shared broker: many gateway nodes on one Redis behave as one.
//!
//! Redis holds the cluster's event log: one global sequence (`INCR`) and one stream whose
//! entry ids are that sequence, written by one Lua script together with a `PUBLISH` of the
//! event. Every node keeps its hub as a replica of the log's tail:
//!
//! * the [`Replicator`] (a background service) takes events in from pub/sub, in sequence order;
//!   when a seq is missing (pub/sub is at-most-once: a reconnect, `CLIENT KILL`, a full buffer)
//!   it reads the gap from the log with `XRANGE`, and a once-a-second look at the sequence
//!   catches a subscription that died silently, so no subscriber ever stalls unnoticed;
//! * a node that starts, or comes back after Redis did, loads what it missed from the log;
//!   events the log no longer has are declared lost to the hub ([`Hub::skip_to`]), so a resume
//!   from before them gets `reset` rather than a silent gap.
//!
//! The publishing node takes its own event in by the same path as every other node (it waits,
//! briefly, for it to come back), so nothing is delivered twice and 202 still means "in history
//! here". Ids are `<epoch>-<seq>` with a cluster-wide epoch kept in Redis, so a client may resume
//! on any node. Every key carries the hash tag `{sse-gateway}`: the script touches the sequence
//! and the log at once, which Redis Cluster allows only within one slot (one global order has
//! that price: the log lives on one shard).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Client, Script};
use tokio::sync::{Notify, OnceCell};

use super::{Broker, BrokerError, Draft, SourceMark};
use crate::hub::{Event, EventId, Hub};
use crate::metrics;

/// Log entries kept in Redis (trimmed approximately). Nodes that start, or reconnect after an
/// outage, can recover this much; it bounds Redis memory at roughly this many events.
const LOG_MAX_EVENTS: usize = 100_000;
/// Entries read per `XRANGE` while catching up.
const CATCH_UP_BATCH: usize = 1_000;
/// How long a publish waits for its event to come back to this node before answering anyway
/// (the event is in the shared log already).
const PUBLISH_ECHO_WAIT: Duration = Duration::from_secs(1);
/// A publish that has not come back by then asks the replicator to read the log.
const PUBLISH_NUDGE_AFTER: Duration = Duration::from_millis(50);
/// How often the replicator compares the cluster's sequence with the hub's.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Redis commands give up after this, so a publish during an outage gets 503 quickly.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// The keys, all in one hash slot.
const SEQ_KEY: &str = "{sse-gateway}:seq";
const EPOCH_KEY: &str = "{sse-gateway}:epoch";
const LOG_KEY: &str = "{sse-gateway}:log";
const PUBSUB_CHANNEL: &str = "{sse-gateway}:events";

/// Appends one event to the log and announces it. Returns its seq. KEYS: sequence, log, and for
/// an event read from a source also the source's lease and resume keys. ARGV: event type,
/// channels (comma-separated: channel names cannot hold a comma), data, log length, pub/sub
/// channel, and for a source this node's id and the upstream id. A source event from a node
/// that no longer holds the lease is refused (-1): the new leader will read it again.
const PUBLISH_SCRIPT: &str = r"
if #KEYS == 4 and redis.call('GET', KEYS[3]) ~= ARGV[6] then return -1 end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], seq .. '-0', 't', ARGV[1], 'c', ARGV[2], 'd', ARGV[3])
redis.call('PUBLISH', ARGV[5], seq .. '\n' .. ARGV[1] .. '\n' .. ARGV[2] .. '\n' .. ARGV[3])
if #KEYS == 4 then redis.call('SET', KEYS[4], ARGV[7]) end
return seq
";

/// Takes the lease KEYS[1] for node ARGV[1] for ARGV[2] ms if it is free, or renews it if this
/// node holds it. Returns 1 when this node holds it afterwards.
const LEAD_SCRIPT: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
";

/// Frees the lease KEYS[1] if node ARGV[1] holds it.
const RELEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// How long a source's lease lasts unless renewed: a dead leader's source is taken over by
/// another node within this time (plus one of its retry intervals).
pub const SOURCE_LEASE: Duration = Duration::from_secs(5);

fn lease_key(source: &str) -> String {
    format!("{{sse-gateway}}:source:{source}:lease")
}

fn resume_key(source: &str) -> String {
    format!("{{sse-gateway}}:source:{source}:resume")
}

/// Takes a place in the connection count hash KEYS[1] (node → count) for node ARGV[1] if the
/// live nodes hold fewer than ARGV[2]; counts of nodes whose liveness key (ARGV[3] .. node) has
/// lapsed are dropped on the way, so a crashed node's streams stop counting within seconds.
/// (The liveness keys share the hash tag, hence the slot.)
const HOLD_SCRIPT: &str = r"
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] == ARGV[1] or redis.call('EXISTS', ARGV[3] .. fields[i]) == 1 then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
";

/// Gives back a place of node ARGV[1] in KEYS[1].
const UNHOLD_SCRIPT: &str = r"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
";

/// A token bucket as GCRA on Redis time: KEYS[1] holds the theoretical arrival time (ms).
/// ARGV: emission interval (ms, fractional), burst. Returns 0 when a token was taken, else the
/// milliseconds until one is back.
const TOKEN_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat + interval - now - window
if wait > 0 then return math.ceil(wait) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(window + interval))
return 0
";

/// Node reports for `?scope=cluster`: one key per node (lapsing with it) and an index of nodes
/// by the time they last reported.
const REPORT_PREFIX: &str = "{sse-gateway}:report:";
const REPORTERS_KEY: &str = "{sse-gateway}:reporters";

/// A node's liveness key (refreshed every poll, lapses 5 s after the node dies).
const NODE_ALIVE_PREFIX: &str = "{sse-gateway}:node:";
const NODE_ALIVE_FOR: Duration = Duration::from_secs(5);

/// Raises the sequence to at least ARGV[1]: after Redis lost its data (a restart without
/// persistence), the first node back makes sure no id it has already seen is handed out again.
const FLOOR_SCRIPT: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
";

/// State shared by the broker (publishing) and the replicator (taking events in).
struct Shared {
    hub: Arc<Hub>,
    /// This process among the nodes: source leases and connection counts are held in its name.
    node_id: String,
    client: Client,
    /// Set by the replicator once connected; publishes before that get 503.
    conn: OnceCell<ConnectionManager>,
    up: AtomicBool,
    /// Asks the replicator to read the log now.
    nudge: Notify,
}

impl Shared {
    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            metrics::BROKER_UP.set(i64::from(up));
            if up {
                tracing::info!("redis broker connected");
            } else {
                tracing::warn!("redis broker unreachable: publishes get 503 until it is back");
            }
        }
    }
}

/// The `broker.kind: redis` broker.
pub struct RedisBroker {
    shared: Arc<Shared>,
    publish: Script,
    lead: Script,
    release: Script,
    hold: Script,
    unhold: Script,
    token: Script,
}

/// Connects to Redis at `url` and reads the cluster's epoch (setting it, if this is the first
/// node). Called once at startup; retries for `patience` before giving up.
pub fn cluster_epoch(url: &str, patience: Duration) -> Result<(Client, u64), String> {
    let client = Client::open(url).map_err(|e| format!("broker.url: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let proposed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let deadline = std::time::Instant::now() + patience;
    loop {
        let attempt = runtime.block_on(async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            let _: bool = conn.set_nx(EPOCH_KEY, proposed).await?;
            conn.get::<_, u64>(EPOCH_KEY).await
        });
        match attempt {
            Ok(epoch) => return Ok((client, epoch)),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(format!("cannot reach Redis at {url}: {e}"))
            }
            Err(e) => {
                tracing::warn!(error = %e, "waiting for Redis");
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

impl RedisBroker {
    /// The broker and its replicator, for a hub whose epoch came from [`cluster_epoch`];
    /// `node_id` names this process among the nodes.
    pub fn new(hub: Arc<Hub>, client: Client, node_id: &str) -> (Arc<RedisBroker>, Replicator) {
        let shared = Arc::new(Shared {
            hub,
            node_id: node_id.to_owned(),
            client,
            conn: OnceCell::new(),
            up: AtomicBool::new(false),
            nudge: Notify::new(),
        });
        let broker = Arc::new(RedisBroker {
            shared: shared.clone(),
            publish: Script::new(PUBLISH_SCRIPT),
            lead: Script::new(LEAD_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
            hold: Script::new(HOLD_SCRIPT),
            unhold: Script::new(UNHOLD_SCRIPT),
            token: Script::new(TOKEN_SCRIPT),
        });
        (broker, Replicator { shared })
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(format!("redis: {e}"))
}

impl RedisBroker {
    fn conn(&self) -> Result<ConnectionManager, BrokerError> {
        self.shared
            .conn
            .get()
            .cloned()
            .ok_or_else(|| unavailable("not connected yet"))
    }

    /// Runs the publish script (fenced by a source lease when `mark` is set), then waits for
    /// the event to come back to this node.
    async fn append(
        &self,
        draft: Draft,
        mark: Option<SourceMark<'_>>,
    ) -> Result<EventId, BrokerError> {
        let mut conn = self.conn()?;
        let mut invocation = self.publish.key(SEQ_KEY);
        invocation
            .key(LOG_KEY)
            .arg(&*draft.event_type)
            .arg(draft.channels.join(","))
            .arg(&draft.data)
            .arg(LOG_MAX_EVENTS)
            .arg(PUBSUB_CHANNEL);
        if let Some(mark) = &mark {
            invocation
                .key(lease_key(mark.source))
                .key(resume_key(mark.source))
                .arg(&self.shared.node_id)
                .arg(mark.upstream_id);
        }
        let seq: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Ok(seq) = u64::try_from(seq) else {
            return Err(BrokerError::NotLeader);
        };
        metrics::EVENTS_PUBLISHED.inc();
        self.taken_here(seq).await;
        Ok(EventId {
            epoch: self.shared.hub.epoch(),
            seq,
        })
    }

    /// In the shared log now: waits (briefly) until this node's hub has it too, nudging the
    /// replicator if pub/sub is slow to bring it back.
    async fn taken_here(&self, seq: u64) {
        let shared = &self.shared;
        let taken = shared.hub.taken(seq);
        tokio::pin!(taken);
        if tokio::time::timeout(PUBLISH_NUDGE_AFTER, &mut taken)
            .await
            .is_err()
        {
            shared.nudge.notify_one();
            let waited = tokio::time::timeout(PUBLISH_ECHO_WAIT, taken).await;
            if waited.is_err() {
                tracing::warn!(seq, "published event not back on this node yet");
            }
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, draft: Draft) -> Result<EventId, BrokerError> {
        self.append(draft, None).await
    }

    async fn publish_from_source(
        &self,
        draft: Draft,
        mark: SourceMark<'_>,
    ) -> Result<EventId, BrokerError> {
        self.append(draft, Some(mark)).await
    }

    async fn lead_source(&self, source: &str) -> Result<bool, BrokerError> {
        let mut conn = self.conn()?;
        let held: i64 = self
            .lead
            .key(lease_key(source))
            .arg(&self.shared.node_id)
            .arg(SOURCE_LEASE.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn release_source(&self, source: &str) {
        let Ok(mut conn) = self.conn() else { return };
        let released: redis::RedisResult<i64> = self
            .release
            .key(lease_key(source))
            .arg(&self.shared.node_id)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = released {
            tracing::debug!(error = %e, source, "lease not released; it will expire");
        }
    }

    async fn source_resume_id(&self, source: &str) -> Result<Option<String>, BrokerError> {
        let mut conn = self.conn()?;
        conn.get(resume_key(source)).await.map_err(unavailable)
    }

    async fn hold_connection(
        &self,
        scope: &str,
        key: &str,
        max: usize,
    ) -> Result<bool, BrokerError> {
        let mut conn = self.conn()?;
        let held: i64 = self
            .hold
            .key(format!("{{sse-gateway}}:conns:{scope}:{key}"))
            .arg(&self.shared.node_id)
            .arg(max)
            .arg(NODE_ALIVE_PREFIX)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(held == 1)
    }

    async fn release_connection(&self, scope: &str, key: &str) {
        let Ok(mut conn) = self.conn() else { return };
        let done: redis::RedisResult<i64> = self
            .unhold
            .key(format!("{{sse-gateway}}:conns:{scope}:{key}"))
            .arg(&self.shared.node_id)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = done {
            // The count is this node's: it stops counting when the node's liveness lapses.
            tracing::debug!(error = %e, "a connection place was not given back");
        }
    }

    async fn take_token(
        &self,
        bucket: &str,
        key: &str,
        rate: crate::config::RateLimit,
    ) -> Result<Option<Duration>, BrokerError> {
        let mut conn = self.conn()?;
        let wait_ms: u64 = self
            .token
            .key(format!("{{sse-gateway}}:rate:{bucket}:{key}"))
            .arg(1000.0 / f64::from(rate.per_second.max(1)))
            .arg(rate.burst.max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    async fn report_node(&self, node: &str, report: String) {
        let Ok(mut conn) = self.conn() else { return };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let stale = now.saturating_sub(60_000);
        let done: redis::RedisResult<()> = redis::pipe()
            .pset_ex(
                format!("{REPORT_PREFIX}{node}"),
                report,
                NODE_ALIVE_FOR.as_millis() as u64,
            )
            .zadd(REPORTERS_KEY, node, now)
            .zrembyscore(REPORTERS_KEY, 0, stale)
            .query_async(&mut conn)
            .await;
        if let Err(e) = done {
            tracing::debug!(error = %e, "node report not shared");
        }
    }

    async fn node_reports(&self) -> Result<Option<Vec<String>>, BrokerError> {
        let mut conn = self.conn()?;
        let nodes: Vec<String> = conn
            .zrange(REPORTERS_KEY, 0, -1)
            .await
            .map_err(unavailable)?;
        if nodes.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let keys: Vec<String> = nodes
            .iter()
            .map(|n| format!("{REPORT_PREFIX}{n}"))
            .collect();
        let reports: Vec<Option<String>> = conn.mget(keys).await.map_err(unavailable)?;
        // Nodes whose report lapsed are gone.
        Ok(Some(reports.into_iter().flatten().collect()))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::Acquire)
    }
}

/// Keeps this node's hub a replica of the cluster log (see the module doc). A pingora
/// background service.
pub struct Replicator {
    shared: Arc<Shared>,
}

/// Why a connected period ended.
enum Lost {
    Redis(redis::RedisError),
    Subscription,
}

#[async_trait]
impl BackgroundService for Replicator {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut wait = Duration::from_millis(100);
        loop {
            let lost = tokio::select! {
                lost = self.connected() => lost,
                _ = shutdown.changed() => return,
            };
            let was_up = self.shared.up.load(Ordering::Acquire);
            self.shared.set_up(false);
            match lost {
                Lost::Redis(e) => tracing::warn!(error = %e, "redis connection lost; reconnecting"),
                Lost::Subscription => tracing::warn!("redis subscription ended; reconnecting"),
            }
            // Quick retries after a working period, slower ones while Redis stays away.
            wait = if was_up {
                Duration::from_millis(100)
            } else {
                (wait * 2).min(Duration::from_secs(2))
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Replicator {
    /// One connected period: subscribe, catch up, then take events in until something breaks.
    async fn connected(&self) -> Lost {
        let shared = &self.shared;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1);
        let mut conn = match shared.conn.get() {
            Some(conn) => conn.clone(),
            None => match shared
                .client
                .get_connection_manager_with_config(config)
                .await
            {
                Ok(conn) => shared.conn.get_or_init(|| async { conn }).await.clone(),
                Err(e) => return Lost::Redis(e),
            },
        };
        let mut pubsub = match shared.client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(e) => return Lost::Redis(e),
        };
        if let Err(e) = pubsub.subscribe(PUBSUB_CHANNEL).await {
            return Lost::Redis(e);
        }
        // Subscribed first, then read the log: nothing published in between is missed.
        if let Err(e) = self.restore(&mut conn).await {
            return Lost::Redis(e);
        }
        if let Err(e) = self.alive(&mut conn).await {
            return Lost::Redis(e);
        }
        shared.set_up(true);
        let mut messages = pubsub.into_on_message();
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        loop {
            let caught_up = tokio::select! {
                message = messages.next() => match message {
                    Some(message) => self.take_message(message.get_payload_bytes(), &mut conn).await,
                    None => return Lost::Subscription,
                },
                () = shared.nudge.notified() => self.catch_up(&mut conn).await,
                _ = poll.tick() => self.poll(&mut conn).await,
            };
            if let Err(e) = caught_up {
                return Lost::Redis(e);
            }
        }
    }

    /// After (re)connecting: makes sure the cluster sequence is not behind this node (Redis may
    /// have lost its data), then reads what the log has beyond the hub.
    async fn restore(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        let last = self.shared.hub.last_seq();
        let epoch = self.shared.hub.epoch();
        let _: bool = conn.set_nx(EPOCH_KEY, epoch).await?;
        let cluster_epoch: u64 = conn.get(EPOCH_KEY).await?;
        if cluster_epoch != epoch {
            // Another node re-created the cluster after Redis lost its data, with a new epoch:
            // this node's ids would not match theirs. Continue on our epoch (ids still never
            // repeat thanks to the floor below) and say so; a restart of this node aligns it.
            tracing::warn!(
                epoch,
                cluster_epoch,
                "the cluster epoch changed (Redis lost its data?); restart this node to align"
            );
        }
        let _: i64 = Script::new(FLOOR_SCRIPT)
            .key(SEQ_KEY)
            .arg(last)
            .invoke_async(conn)
            .await?;
        self.catch_up(conn).await
    }

    /// Refreshes this node's liveness key, which keeps its connection counts counted.
    async fn alive(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        let key = format!("{NODE_ALIVE_PREFIX}{}", self.shared.node_id);
        conn.pset_ex(key, 1, NODE_ALIVE_FOR.as_millis() as u64)
            .await
    }

    /// One pub/sub message: the next event is taken in at once; anything else means events
    /// were missed, which the log provides.
    async fn take_message(
        &self,
        payload: &[u8],
        conn: &mut ConnectionManager,
    ) -> redis::RedisResult<()> {
        let Some((seq, event)) = parse_message(payload) else {
            tracing::warn!("ignoring a malformed message on the events channel");
            return Ok(());
        };
        let hub = &self.shared.hub;
        let last = hub.last_seq();
        if seq <= last {
            return Ok(()); // already taken in by a catch-up
        }
        if seq == last + 1 {
            hub.deliver_at(seq, |id| event.into_event(id));
            return Ok(());
        }
        self.catch_up(conn).await
    }

    /// Compares the cluster's sequence with the hub's: a subscription that died without a word
    /// is noticed within a second.
    async fn poll(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        self.alive(conn).await?;
        let cluster: Option<u64> = conn.get(SEQ_KEY).await?;
        if cluster.unwrap_or(0) > self.shared.hub.last_seq() {
            self.catch_up(conn).await?;
        }
        Ok(())
    }

    /// Reads every log entry after the hub's last seq and takes it in. Entries the log has
    /// already trimmed (or lost) are declared lost to the hub first.
    async fn catch_up(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        let hub = &self.shared.hub;
        loop {
            let last = hub.last_seq();
            let reply: StreamRangeReply = conn
                .xrange_count(LOG_KEY, format!("({last}-0"), "+", CATCH_UP_BATCH)
                .await?;
            if reply.ids.is_empty() {
                let cluster: Option<u64> = conn.get(SEQ_KEY).await?;
                let cluster = cluster.unwrap_or(0);
                if cluster > last {
                    // Published, but no longer (or never, after a data loss) in the log.
                    hub.skip_to(cluster + 1);
                    metrics::BROKER_EVENTS_LOST.inc_by(cluster - last);
                }
                return Ok(());
            }
            let count = reply.ids.len();
            for entry in reply.ids {
                let Some(seq) = entry
                    .id
                    .split('-')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                let event = PendingEvent {
                    event_type: entry.get("t").unwrap_or_default(),
                    channels: entry.get("c").unwrap_or_default(),
                    data: entry.get("d").unwrap_or_default(),
                };
                let last = hub.last_seq();
                if seq <= last {
                    continue;
                }
                if seq > last + 1 {
                    metrics::BROKER_EVENTS_LOST.inc_by(seq - last - 1);
                    hub.skip_to(seq);
                }
                hub.deliver_at(seq, |id| event.into_event(id));
                metrics::BROKER_EVENTS_RECOVERED.inc();
            }
            if count < CATCH_UP_BATCH {
                return Ok(());
            }
        }
    }
}

/// An event as the log and the pub/sub message carry it.
struct PendingEvent {
    event_type: String,
    channels: String,
    data: String,
}

impl PendingEvent {
    fn into_event(self, id: EventId) -> Arc<Event> {
        let channels: Box<[Box<str>]> = self
            .channels
            .split(',')
            .filter(|c| !c.is_empty())
            .map(Into::into)
            .collect();
        Event::new(id, &self.event_type, channels, &self.data)
    }
}

/// `seq \n type \n channels \n data` (data may hold line breaks; the other fields cannot).
fn parse_message(payload: &[u8]) -> Option<(u64, PendingEvent)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut fields = text.splitn(4, '\n');
    let seq = fields.next()?.parse().ok()?;
    let event_type = fields.next()?.to_owned();
    let channels = fields.next()?.to_owned();
    let data = fields.next()?.to_owned();
    Some((
        seq,
        PendingEvent {
            event_type,
            channels,
            data,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_with_line_breaks_in_data() {
        let (seq, event) = parse_message(b"42\nnote\na,b\nline 1\nline 2\n").expect("parses");
        assert_eq!(seq, 42);
        assert_eq!(event.event_type, "note");
        assert_eq!(event.channels, "a,b");
        assert_eq!(event.data, "line 1\nline 2\n");
        assert!(parse_message(b"x\nnote\na\nd").is_none());
        assert!(parse_message(b"1\nnote\na").is_none());
        assert!(parse_message(b"\xff").is_none());
    }
}
