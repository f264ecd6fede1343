//! The subscribers: [`EventSource`] clients on every node, each keeping what it received.
//!
//! Each one subscribes to both channels on one stream, so its resumes cover several channels
//! at once, and keeps, in arrival order, every event's id and sequence number and every
//! `reset`; the run's [`crate::tally`] reads those after the run.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sse_loadgen::eventsource::{End, EventSource, Listener, Nodes, Settings};
use sse_loadgen::payload::parse_data;
use sse_wire::parse::ParsedEvent;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::traffic::CHANNEL;

/// The channel the gateway source relays the upstream's notifications into.
pub const SOURCE_CHANNEL: &str = "notifications";
/// The event type of published events (what `sse-loadgen`'s gateway format sends).
const PUBLISHED_TYPE: &str = "bench";
/// The event type the reference upstream gives its notifications, which the source keeps.
const SOURCE_TYPE: &str = "notification";
/// How often waits look at the subscribers again.
const POLL: Duration = Duration::from_millis(100);

/// What one received event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A published event, by sequence number.
    Published(u64),
    /// An upstream notification, by sequence number.
    Source(u64),
    /// Anything else (not ours, or mangled).
    Foreign,
}

/// One received event.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub id: Box<str>,
    pub kind: Kind,
}

/// A `reset` event: its reason, and how many events had been received before it.
#[derive(Debug, Clone)]
pub struct Reset {
    pub reason: String,
    pub after: usize,
}

/// Everything one subscriber saw.
#[derive(Debug, Default)]
pub struct Log {
    pub receipts: Vec<Receipt>,
    pub resets: Vec<Reset>,
    /// Streams opened, and on which nodes (the first one apart).
    pub opens: u32,
    pub nodes: HashSet<usize>,
    pub first_node: Option<usize>,
    /// Why streams ended or failed to open, by [`End`].
    pub ends: BTreeMap<String, u64>,
    /// Events received beyond [`Log::cap`], counted but not kept.
    pub dropped: u64,
    /// Most receipts kept: a server sending without end cannot grow the log without bound.
    cap: usize,
    /// Sequence numbers received, for [`Pool::settle`].
    published: HashSet<u64>,
    source: HashSet<u64>,
}

impl Log {
    fn new(cap: usize) -> Log {
        Log {
            cap,
            ..Log::default()
        }
    }

    fn has_all(&self, published: &[u64], source: &[u64]) -> bool {
        published.iter().all(|seq| self.published.contains(seq))
            && source.iter().all(|seq| self.source.contains(seq))
    }
}

/// Classifies an event by its type and data.
fn kind(event: &ParsedEvent) -> Kind {
    match (event.event.as_str(), parse_data(&event.data)) {
        (PUBLISHED_TYPE, Some((seq, _))) => Kind::Published(seq),
        (SOURCE_TYPE, Some((seq, _))) => Kind::Source(seq),
        _ => Kind::Foreign,
    }
}

/// The reason in a `reset` event's data `{"reason": "..."}`.
fn reset_reason(data: &str) -> String {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unreadable".to_owned())
}

/// A subscriber's [`Listener`]: writes into its shared [`Log`].
struct Recorder(Arc<Mutex<Log>>);

impl Listener for Recorder {
    fn opened(&mut self, node: usize) {
        if let Ok(mut log) = self.0.lock() {
            log.opens += 1;
            log.nodes.insert(node);
            log.first_node.get_or_insert(node);
        }
    }

    fn event(&mut self, event: ParsedEvent) {
        let Ok(mut log) = self.0.lock() else { return };
        if event.event == "reset" {
            let reset = Reset {
                reason: reset_reason(&event.data),
                after: log.receipts.len(),
            };
            log.resets.push(reset);
            return;
        }
        let kind = kind(&event);
        match kind {
            Kind::Published(seq) => log.published.insert(seq),
            Kind::Source(seq) => log.source.insert(seq),
            Kind::Foreign => false,
        };
        if log.receipts.len() >= log.cap {
            log.dropped += 1;
            return;
        }
        log.receipts.push(Receipt {
            id: event.id.into(),
            kind,
        });
    }

    fn ended(&mut self, _node: usize, end: End) {
        if let Ok(mut log) = self.0.lock() {
            *log.ends.entry(end.to_string()).or_default() += 1;
        }
    }
}

/// Every subscriber of a run.
pub struct Pool {
    logs: Vec<Arc<Mutex<Log>>>,
    tasks: Vec<AbortHandle>,
}

impl Pool {
    /// Starts `per_node` subscribers on each node, each keeping at most `cap` events, and
    /// waits (at most `timeout`) until every one has opened its stream.
    pub async fn open(
        nodes: &Nodes,
        per_node: usize,
        cap: usize,
        timeout: Duration,
    ) -> anyhow::Result<Pool> {
        let count = nodes.read().map(|n| n.len()).unwrap_or(0);
        let settings = Settings {
            path: format!("/events?channel={CHANNEL}&channel={SOURCE_CHANNEL}"),
            retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(5),
            stall: Duration::from_secs(10),
            open_timeout: Duration::from_secs(5),
        };
        let mut pool = Pool {
            logs: Vec::new(),
            tasks: Vec::new(),
        };
        for node in 0..count {
            for _ in 0..per_node {
                let log = Arc::new(Mutex::new(Log::new(cap)));
                let client =
                    EventSource::new(settings.clone(), nodes.clone(), node, Recorder(log.clone()));
                pool.tasks.push(tokio::spawn(client.run()).abort_handle());
                pool.logs.push(log);
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            let open = pool.count(|log| log.opens > 0);
            if open == pool.logs.len() {
                return Ok(pool);
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "only {open} of {} subscribers opened within {timeout:?}",
                    pool.logs.len()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn count(&self, test: impl Fn(&Log) -> bool) -> usize {
        self.logs
            .iter()
            .filter(|log| log.lock().is_ok_and(|log| test(&log)))
            .count()
    }

    /// Waits until every subscriber has every event in `published` and `source`, at most
    /// `settle`; returns whether they all had.
    pub async fn settle(&self, published: &[u64], source: &[u64], settle: Duration) -> bool {
        let deadline = Instant::now() + settle;
        loop {
            if self.count(|log| log.has_all(published, source)) == self.logs.len() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops every subscriber and hands over their logs.
    pub fn finish(self) -> Vec<Log> {
        for task in &self.tasks {
            task.abort();
        }
        self.logs
            .into_iter()
            .map(|log| match log.lock() {
                Ok(mut log) => std::mem::take(&mut *log),
                Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, event: &str, data: &str) -> ParsedEvent {
        ParsedEvent {
            id: id.to_owned(),
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn records_events_by_kind_and_resets_with_their_place() {
        let log = Arc::new(Mutex::new(Log::new(3)));
        let mut recorder = Recorder(log.clone());
        recorder.opened(1);
        recorder.event(event("9-1", "bench", "1 100 "));
        recorder.event(event(
            "9-2",
            "notification",
            r#"{"id":"5-1","title":"1 200","body":""}"#,
        ));
        recorder.event(event("9-2", "reset", r#"{"reason":"history_evicted"}"#));
        recorder.event(event("9-3", "message", "hello"));
        recorder.event(event("9-4", "bench", "2 300 "));
        recorder.ended(1, End::Closed);
        let log = log.lock().unwrap();
        let kinds: Vec<Kind> = log.receipts.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, [Kind::Published(1), Kind::Source(1), Kind::Foreign]);
        assert_eq!(log.dropped, 1, "the fourth event is over the cap");
        assert_eq!(log.resets.len(), 1);
        assert_eq!(
            (log.resets[0].reason.as_str(), log.resets[0].after),
            ("history_evicted", 2)
        );
        assert!(log.has_all(&[1, 2], &[1]), "counted even when not kept");
        assert!(!log.has_all(&[3], &[]));
        assert_eq!(log.ends.get("closed"), Some(&1));
        assert_eq!((log.opens, log.nodes.len()), (1, 1));
    }
}
