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
//!   from before them gets `reset` rather than a silent gap;
//! * when Redis comes back empty (restarted without persistence), the nodes restore the cluster
//!   before anyone publishes again: the first node back sets the epoch again and opens a short
//!   recovery window, during which every node raises the sequence above every id it has seen
//!   and gives the events still in its history back to the log, so the nodes' replicas, not
//!   Redis, are what survives (see `replicator`).
//!
//! The publishing node takes its own event in by the same path as every other node, and answers
//! 202 only once it has: nothing is delivered twice, 202 means "in history here", and a publish
//! whose event does not come back in time is a 503. The publish script itself refuses (503)
//! while Redis lacks the node's epoch, holds a sequence below an id the node has seen, or is
//! recovering: a publish that reaches a Redis restarted empty, even before the node noticed,
//! cannot reuse a seq. Ids are `<epoch>-<seq>` with a cluster-wide epoch kept in
//! Redis, so a client may resume on any node. Every key carries the hash tag `{sse-gateway}`
//! (see `scripts`): one global order has that price under Redis Cluster, the log lives on one
//! shard.

mod replicator;
mod scripts;
mod tickets;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Client, Script};
use tokio::sync::{Notify, OnceCell};

pub use replicator::Replicator;
use scripts::*;

use super::{Broker, BrokerError, Draft, SourceMark};
use crate::hub::{EventId, Hub};
use crate::metrics;

/// Log entries kept in Redis (trimmed approximately). Nodes that start, or reconnect after an
/// outage, can recover this much; it bounds Redis memory at roughly this many events.
const LOG_MAX_EVENTS: usize = 100_000;
/// How long a publish waits for its event to come back to this node; past it, the publish is
/// answered 503 (the event is in the shared log and may still be delivered: the publisher
/// cannot know, as with any timeout).
const PUBLISH_ECHO_WAIT: Duration = Duration::from_secs(1);
/// A publish that has not come back by then asks the replicator to read the log.
const PUBLISH_NUDGE_AFTER: Duration = Duration::from_millis(50);
/// Redis commands give up after this, so a publish during an outage gets 503 quickly.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a disconnected replicator waits between attempts: a node is back within this
/// after Redis is (well inside the recovery window, see `scripts::RECOVERY_WINDOW`).
const MAX_RECONNECT_WAIT: Duration = Duration::from_millis(500);
/// Log entries searched for a source's last event when its resume key was lost with Redis's
/// data: a source quieter than this many events of the cluster starts from its upstream's now.
const RESUME_SCAN: usize = 10_000;
/// How long a source's lease lasts unless renewed: a dead leader's source is taken over by
/// another node within this time (plus one of its retry intervals).
pub const SOURCE_LEASE: Duration = Duration::from_secs(5);

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
    /// Tells the replicator that Redis is not the one it restored (a publish found no epoch or
    /// another one): it reconnects and restores again.
    stale: Notify,
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

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
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
    resume: Script,
}

/// Whether `url` names a Redis this build can reach: `redis://host:port[/db]`,
/// `rediss://host:port` (TLS) or `unix:///path/to/socket` (`redis+unix://` too). Checked with
/// the client's own parser, so the config accepts exactly what runs.
pub fn check_url(url: &str) -> Result<(), String> {
    const SCHEMES: [&str; 4] = ["redis://", "rediss://", "unix://", "redis+unix://"];
    if !SCHEMES
        .iter()
        .any(|s| url.len() > s.len() && url.starts_with(s))
    {
        return Err("expected redis://host:port, rediss://host:port or unix:///path".into());
    }
    // The client's message quotes no part of the URL (which may hold a password).
    Client::open(url).map(drop).map_err(|e| e.to_string())
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
            stale: Notify::new(),
        });
        let broker = Arc::new(RedisBroker {
            shared: shared.clone(),
            publish: Script::new(PUBLISH_SCRIPT),
            lead: Script::new(LEAD_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
            hold: Script::new(HOLD_SCRIPT),
            unhold: Script::new(UNHOLD_SCRIPT),
            token: Script::new(TOKEN_SCRIPT),
            resume: Script::new(RESUME_SCRIPT),
        });
        (broker, Replicator::new(shared))
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
    /// the event to come back to this node: only then is it accepted.
    async fn append(
        &self,
        draft: Draft,
        mark: Option<SourceMark<'_>>,
    ) -> Result<EventId, BrokerError> {
        let mut conn = self.conn()?;
        let epoch = self.shared.hub.epoch();
        let seen = self.shared.hub.last_seq();
        let mut invocation = self.publish.key(SEQ_KEY);
        invocation
            .key(LOG_KEY)
            .key(EPOCH_KEY)
            .key(RECOVERING_KEY)
            .arg(&*draft.event_type)
            .arg(draft.channels.join(","))
            .arg(&draft.data)
            .arg(LOG_MAX_EVENTS)
            .arg(PUBSUB_CHANNEL)
            .arg(epoch)
            .arg(seen);
        if let Some(mark) = &mark {
            invocation
                .key(lease_key(mark.source))
                .key(resume_key(mark.source))
                .arg(&self.shared.node_id)
                .arg(mark.upstream_id)
                .arg(mark.source);
        }
        let answer: i64 = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let seq = match answer {
            PUBLISH_NOT_LEADER => return Err(BrokerError::NotLeader),
            PUBLISH_WRONG_EPOCH => {
                // Redis is not the one this node restored (it restarted empty, and the
                // replicator has not restored it yet): nothing was written.
                self.shared.set_up(false);
                self.shared.stale.notify_waiters();
                return Err(unavailable(
                    "redis lost its data; the cluster is recovering",
                ));
            }
            PUBLISH_RECOVERING => {
                return Err(unavailable(
                    "the cluster is recovering after redis lost its data",
                ))
            }
            seq => u64::try_from(seq).map_err(|_| unavailable("unexpected answer"))?,
        };
        metrics::EVENTS_PUBLISHED.inc();
        if !self.taken_here(seq).await {
            return Err(unavailable(
                "the event did not come back to this node in time; it may still be delivered",
            ));
        }
        Ok(EventId { epoch, seq })
    }

    /// In the shared log now: waits (briefly) until this node's hub has it too, nudging the
    /// replicator if pub/sub is slow to bring it back. `false` when it did not arrive in time,
    /// or was skipped over as lost.
    async fn taken_here(&self, seq: u64) -> bool {
        let shared = &self.shared;
        let taken = shared.hub.taken(seq);
        tokio::pin!(taken);
        if let Ok(arrived) = tokio::time::timeout(PUBLISH_NUDGE_AFTER, &mut taken).await {
            return arrived;
        }
        shared.nudge.notify_one();
        let arrived = tokio::time::timeout(PUBLISH_ECHO_WAIT, taken).await;
        if arrived != Ok(true) {
            tracing::warn!(
                seq,
                "published event not back on this node in time: answered 503"
            );
            metrics::PUBLISH_UNCONFIRMED.inc();
        }
        arrived == Ok(true)
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
        self.resume
            .key(resume_key(source))
            .key(LOG_KEY)
            .key(RECOVERING_KEY)
            .arg(source)
            .arg(RESUME_SCAN)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
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
        self.shared.is_up()
    }
}
