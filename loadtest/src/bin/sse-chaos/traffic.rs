//! The traffic of a run: events published with `POST /broadcast` spread over the nodes, and
//! notifications posted to the reference upstream, each at a steady rate, each recorded with
//! its answer.
//!
//! Every event is sent once: a 503 is counted, never retried, and a request whose connection
//! broke is never sent again ([`Publisher::once_only`]), so each sequence number names at most
//! one event. Sends run concurrently (up to [`MAX_IN_FLIGHT`]) on an absolute schedule, so a
//! node that answers slowly during a fault does not slow the others down.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sse_loadgen::eventsource::Nodes;
use sse_loadgen::options::PublishFormat;
use sse_loadgen::payload::{make_data, unix_nanos};
use sse_loadgen::publisher::{Outcome, Publisher};
use sse_loadgen::target::Target;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cluster::UpstreamGate;

/// The channel of the published events.
pub const CHANNEL: &str = "chaos";
/// Sends waiting for an answer at most; the schedule waits beyond that.
const MAX_IN_FLIGHT: usize = 256;
/// Longest wait for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// A pooled connection idle this long is not reused: the server may be about to close it.
const MAX_IDLE: Duration = Duration::from_secs(2);

/// What one send got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answered {
    /// 2xx, with the event's id when the answer named one.
    Accepted(Option<String>),
    /// Another status.
    Refused(u16),
    /// The connection could not be made: nothing was sent.
    NotSent,
    /// Sent, but no complete answer came: it may or may not have been taken.
    Unanswered,
}

/// One send: its sequence number (in its data), when it was answered (from the first send),
/// and the answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub seq: u64,
    pub at: Duration,
    pub answered: Answered,
}

/// Idle keep-alive connections to one process, each with the time it was last used, the most
/// recently used last.
type Idle = Vec<(Publisher, Instant)>;

/// Sends of one kind: the request format, and keep-alive connections by address.
struct Sender {
    format: PublishFormat,
    key: Option<String>,
    /// Idle connections by address and the process's generation there (a process restarted
    /// on the same port closed them all).
    pool: Mutex<HashMap<(SocketAddr, u32), Idle>>,
}

impl Sender {
    /// Sends `data` to `addr` (where the process of `generation` listens) at `path` and
    /// waits for the answer.
    async fn send(&self, addr: SocketAddr, generation: u32, path: &str, data: &str) -> Answered {
        let mut publisher = self.take((addr, generation)).unwrap_or_else(|| {
            let target = Target {
                authority: addr.to_string(),
                path: path.to_owned(),
                addr,
            };
            Publisher::new(target, self.format, self.key.clone(), CHANNEL.to_owned()).once_only()
        });
        let request = publisher.request(data);
        let answered = match publisher.send(&request, ANSWER_TIMEOUT).await {
            Outcome::Accepted(body) => Answered::Accepted(event_id(&body)),
            Outcome::Rejected { status, .. } => Answered::Refused(status),
            Outcome::NotSent(_) => Answered::NotSent,
            Outcome::Unknown(_) => Answered::Unanswered,
        };
        if let Ok(mut pool) = self.pool.lock() {
            let idle = pool.entry((addr, generation)).or_default();
            if idle.len() < MAX_IN_FLIGHT {
                idle.push((publisher, Instant::now()));
            }
        }
        answered
    }

    /// The most recently used idle connection to `to`, dropping stale ones.
    fn take(&self, to: (SocketAddr, u32)) -> Option<Publisher> {
        let mut pool = self.pool.lock().ok()?;
        let idle = pool.get_mut(&to)?;
        let (publisher, since) = idle.pop()?;
        if since.elapsed() > MAX_IDLE {
            // Everything under it has been idle even longer.
            idle.clear();
            return None;
        }
        Some(publisher)
    }
}

/// The `id` of a gateway's 202 answer.
fn event_id(body: &str) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_str(body).ok()?;
    answer["id"].as_str().map(str::to_owned)
}

/// Sends `send(seq)` for seq 1, 2, … at `rate` per second from `start` until `until`, up to
/// [`MAX_IN_FLIGHT`] at a time; returns every answer, by seq.
async fn schedule<F, Fut>(rate: f64, start: Instant, until: Instant, send: F) -> Vec<Answer>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Answered> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut sends = JoinSet::new();
    let mut answers = Vec::new();
    let mut collect = |done: Result<Answer, tokio::task::JoinError>| {
        if let Ok(answer) = done {
            answers.push(answer);
        }
    };
    for seq in 1u64.. {
        let at = start + Duration::from_secs_f64((seq - 1) as f64 / rate);
        if at >= until {
            break;
        }
        tokio::time::sleep_until(at).await;
        while let Some(done) = sends.try_join_next() {
            collect(done);
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let sending = send(seq);
        sends.spawn(async move {
            let answered = sending.await;
            drop(permit);
            Answer {
                seq,
                at: start.elapsed(),
                answered,
            }
        });
    }
    while let Some(done) = sends.join_next().await {
        collect(done);
    }
    answers.sort_by_key(|a| a.seq);
    answers
}

/// Publishes event seq (data `"<seq> <send time>"`) to node `seq % nodes`, or the next node
/// up when that one is marked down, at `rate` per second until `until`.
pub async fn publish(
    nodes: Nodes,
    key: String,
    rate: f64,
    start: Instant,
    until: Instant,
) -> Vec<Answer> {
    let sender = Arc::new(Sender {
        format: PublishFormat::Gateway,
        key: Some(key),
        pool: Mutex::default(),
    });
    schedule(rate, start, until, |seq| {
        let sender = sender.clone();
        let addr = nodes.read().ok().and_then(|table| {
            let count = table.len().max(1);
            (0..count).find_map(|step| table[(seq as usize + step) % count])
        });
        async move {
            match addr {
                Some(addr) => {
                    let data = make_data(seq, unix_nanos(), 0);
                    // A restarted node listens on a new port: the address is the generation.
                    sender.send(addr, 0, "/broadcast", &data).await
                }
                None => Answered::NotSent,
            }
        }
    })
    .await
}

/// Posts notification seq (title `"<seq> <send time>"`) to the upstream at `rate` per second
/// until `until`; none when `rate` is 0. A post holds `upstream` until it is answered, and is
/// not sent while it is `None`.
pub async fn post_notifications(
    upstream: UpstreamGate,
    rate: f64,
    start: Instant,
    until: Instant,
) -> Vec<Answer> {
    if rate <= 0.0 {
        return Vec::new();
    }
    let sender = Arc::new(Sender {
        format: PublishFormat::Notification,
        key: None,
        pool: Mutex::default(),
    });
    schedule(rate, start, until, |seq| {
        let sender = sender.clone();
        let upstream = upstream.clone();
        async move {
            let held = upstream.read().await;
            match *held {
                Some((addr, generation)) => {
                    let data = make_data(seq, unix_nanos(), 0);
                    sender.send(addr, generation, "/notifications", &data).await
                }
                None => Answered::NotSent,
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_id_of_an_answer() {
        assert_eq!(
            event_id(r#"{"id":"17-4","channels":["chaos"]}"#),
            Some("17-4".to_owned())
        );
        assert_eq!(event_id("{}"), None);
        assert_eq!(event_id("not json"), None);
    }

    #[tokio::test]
    async fn sends_each_seq_once_on_schedule_and_keeps_every_answer() {
        let start = Instant::now();
        let until = start + Duration::from_millis(200);
        let answers = schedule(50.0, start, until, |seq| async move {
            if seq % 2 == 0 {
                Answered::Refused(503)
            } else {
                Answered::Accepted(None)
            }
        })
        .await;
        let seqs: Vec<u64> = answers.iter().map(|a| a.seq).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert_eq!(answers[1].answered, Answered::Refused(503));
    }
}
