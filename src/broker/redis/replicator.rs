//! Keeps this node's hub a replica of the cluster's log, and restores the cluster after Redis
//! lost its data.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Script};

use super::scripts::*;
use super::{Shared, COMMAND_TIMEOUT, LOG_MAX_EVENTS, MAX_RECONNECT_WAIT};
use crate::hub::{Event, EventId, Origin};
use crate::metrics;
use crate::sse::parse::{ParsedItem, Parser, ParserLimits};

/// Entries read per `XRANGE` while catching up.
const CATCH_UP_BATCH: usize = 1_000;
/// Events given back to the log per script call while restoring it: bounds one call's size.
const RESEED_BATCH: usize = 500;
/// How often the replicator compares the cluster's sequence with the hub's.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps this node's hub a replica of the cluster log (see the module doc). A pingora
/// background service.
pub struct Replicator {
    shared: Arc<Shared>,
}

/// Why a connected period ended.
enum Lost {
    Redis(redis::RedisError),
    Subscription,
    /// A publish found Redis without this node's epoch: it restarted empty.
    Stale,
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
            let was_up = self.shared.is_up();
            self.shared.set_up(false);
            match lost {
                Lost::Redis(e) => tracing::warn!(error = %e, "redis connection lost; reconnecting"),
                Lost::Subscription => tracing::warn!("redis subscription ended; reconnecting"),
                Lost::Stale => tracing::warn!("redis lost its data; restoring the cluster there"),
            }
            // Quick retries after a working period, slower ones while Redis stays away, never
            // slower than the recovery window allows.
            wait = if was_up {
                Duration::from_millis(100)
            } else {
                (wait * 2).min(MAX_RECONNECT_WAIT)
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl Replicator {
    pub(super) fn new(shared: Arc<Shared>) -> Replicator {
        Replicator { shared }
    }

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
        let stale = shared.stale.notified();
        tokio::pin!(stale);
        loop {
            let caught_up = tokio::select! {
                message = messages.next() => match message {
                    Some(message) => self.take_message(message.get_payload_bytes(), &mut conn).await,
                    None => return Lost::Subscription,
                },
                () = &mut stale => return Lost::Stale,
                () = shared.nudge.notified() => self.catch_up(&mut conn).await,
                _ = poll.tick() => self.poll(&mut conn).await,
            };
            if let Err(e) = caught_up {
                return Lost::Redis(e);
            }
        }
    }

    /// After (re)connecting: re-establishes the cluster's state in Redis if it lost it, then
    /// reads what the log has beyond the hub. When this returns, this node may publish: Redis
    /// has the cluster's epoch, and its sequence is at or above every id this node has seen.
    async fn restore(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        let hub = &self.shared.hub;
        let epoch = hub.epoch();
        let (claimed, cluster_epoch): (i64, u64) = Script::new(CLAIM_SCRIPT)
            .key(EPOCH_KEY)
            .key(RECOVERING_KEY)
            .arg(epoch)
            .arg(RECOVERY_WINDOW.as_millis() as u64)
            .invoke_async(conn)
            .await?;
        if claimed == 1 && hub.last_seq() > 0 {
            tracing::warn!(
                epoch,
                window = ?RECOVERY_WINDOW,
                "redis lost its data; restoring the cluster's log from this node's history \
                 (publishes get 503 until the window ends)"
            );
        }
        if cluster_epoch == epoch {
            // Give back what this node still holds beyond the log, then make sure no seq it
            // has seen is handed out again (events it no longer holds included).
            self.reseed(conn).await?;
            let _: i64 = Script::new(FLOOR_SCRIPT)
                .key(SEQ_KEY)
                .arg(hub.last_seq())
                .invoke_async(conn)
                .await?;
        } else {
            // Redis lost its data and a node that was not part of the old sequence began a new
            // one: join it where it stands now. Open streams stay; resumes from old ids reset.
            let seq: Option<u64> = conn.get(SEQ_KEY).await?;
            tracing::warn!(
                epoch,
                cluster_epoch,
                "the cluster started a new sequence without this node (redis lost its data); \
                 joining it: resumes from earlier ids get reset"
            );
            hub.rejoin(cluster_epoch, seq.unwrap_or(0));
        }
        self.catch_up(conn).await
    }

    /// Appends the events this node still has in history and the log lacks (after a data
    /// loss), in order and in batches; each batch raises the sequence with its entries.
    async fn reseed(&self, conn: &mut ConnectionManager) -> redis::RedisResult<()> {
        let top: StreamRangeReply = conn.xrevrange_count(LOG_KEY, "+", "-", 1).await?;
        let top = top
            .ids
            .first()
            .map_or(0, |entry| entry_seq(&entry.id).unwrap_or(0));
        let tail = self.shared.hub.tail(top, LOG_MAX_EVENTS);
        if tail.is_empty() {
            return Ok(());
        }
        let mut given = 0;
        for batch in tail.chunks(RESEED_BATCH) {
            let script = Script::new(RESEED_SCRIPT);
            let mut invocation = script.key(SEQ_KEY);
            invocation.key(LOG_KEY).arg(LOG_MAX_EVENTS);
            for event in batch {
                let (source, upstream) = event
                    .origin
                    .as_deref()
                    .map_or(("", ""), |o| (&*o.source, &*o.upstream_id));
                invocation
                    .arg(event.id.seq)
                    .arg(&*event.event_type)
                    .arg(event.channels.join(","))
                    .arg(frame_data(&event.frame))
                    .arg(source)
                    .arg(upstream);
            }
            let added: u64 = invocation.invoke_async(conn).await?;
            given += added;
        }
        if given > 0 {
            tracing::info!(
                events = given,
                "gave this node's history back to the cluster log"
            );
            metrics::BROKER_EVENTS_RESTORED.inc_by(given);
        }
        Ok(())
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
            // The sequence is read before the log, in one round trip: every seq up to it was
            // in the log before the read (the publish script writes both at once), so one the
            // log does not return was lost, not published in between.
            let (cluster, reply): (Option<u64>, StreamRangeReply) = redis::pipe()
                .get(SEQ_KEY)
                .xrange_count(LOG_KEY, format!("({last}-0"), "+", CATCH_UP_BATCH)
                .query_async(conn)
                .await?;
            if reply.ids.is_empty() {
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
                let Some(seq) = entry_seq(&entry.id) else {
                    continue;
                };
                let event = PendingEvent {
                    event_type: entry.get("t").unwrap_or_default(),
                    channels: entry.get("c").unwrap_or_default(),
                    source: entry.get("s").unwrap_or_default(),
                    upstream_id: entry.get("u").unwrap_or_default(),
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

/// The seq of a log entry id (`<seq>-0`).
fn entry_seq(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// The data of an encoded event frame, as a client reads it (its `data:` lines joined by
/// `\n`): what the log needs to carry the event again.
fn frame_data(frame: &[u8]) -> String {
    let limits = ParserLimits {
        max_line_bytes: frame.len(),
        max_event_bytes: frame.len(),
    };
    let mut items = Vec::new();
    let _ = Parser::new(limits).push(frame, &mut items);
    items
        .into_iter()
        .find_map(|item| match item {
            ParsedItem::Event(event) => Some(event.data),
            _ => None,
        })
        .unwrap_or_default()
}

/// An event as the log and the pub/sub message carry it.
struct PendingEvent {
    event_type: String,
    channels: String,
    /// Empty for a published event.
    source: String,
    upstream_id: String,
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
        let origin = (!self.source.is_empty()).then(|| {
            Box::new(Origin {
                source: self.source.into(),
                upstream_id: self.upstream_id.into(),
            })
        });
        Event::with_origin(id, &self.event_type, channels, &self.data, origin)
    }
}

/// `seq \n type \n channels \n source \n upstream id \n data` (data may hold line breaks; the
/// other fields cannot; source and upstream id are empty for a published event).
fn parse_message(payload: &[u8]) -> Option<(u64, PendingEvent)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut fields = text.splitn(6, '\n');
    let seq = fields.next()?.parse().ok()?;
    let mut field = || fields.next().map(str::to_owned);
    let event_type = field()?;
    let channels = field()?;
    let source = field()?;
    let upstream_id = field()?;
    let data = field()?;
    Some((
        seq,
        PendingEvent {
            event_type,
            channels,
            source,
            upstream_id,
            data,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_with_line_breaks_in_data() {
        let (seq, event) = parse_message(b"42\nnote\na,b\n\n\nline 1\nline 2\n").expect("parses");
        assert_eq!(seq, 42);
        assert_eq!(event.event_type, "note");
        assert_eq!(event.channels, "a,b");
        assert_eq!(
            (event.source.as_str(), event.upstream_id.as_str()),
            ("", "")
        );
        assert_eq!(event.data, "line 1\nline 2\n");
        let (_, event) = parse_message(b"7\nnote\na\nfeed\nup-9\nd").expect("a source's");
        assert_eq!(
            (event.source.as_str(), event.upstream_id.as_str()),
            ("feed", "up-9")
        );
        assert!(parse_message(b"x\nnote\na\n\n\nd").is_none());
        assert!(parse_message(b"1\nnote\na\n\n").is_none());
        assert!(parse_message(b"\xff").is_none());
    }

    #[test]
    fn a_frame_gives_back_the_data_a_client_reads() {
        for data in [
            "",
            "one line",
            "two\nlines",
            "\n\nblank lines\n",
            "{\"json\":1}",
        ] {
            let frame = crate::sse::encode_event("1-2", "note", data);
            assert_eq!(frame_data(&frame), data, "{data:?}");
        }
        assert_eq!(
            frame_data(&crate::sse::encode_event("1-2", "note", "cr\r\nlf")),
            "cr\nlf"
        );
    }
}
