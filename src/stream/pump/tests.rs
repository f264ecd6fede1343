//! The stream loop's timing, with paused time and an in-memory downstream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;
use crate::config::HistoryLimits;
use crate::hub::{Hub, SubscribeRequest};

/// Records every chunk with the (paused) time it was written at.
#[derive(Clone)]
struct Recorder {
    start: Instant,
    chunks: Arc<Mutex<Vec<(Duration, Bytes, bool)>>>,
    leave: Arc<Notify>,
    /// After this many writes, writes never complete (a client that stopped reading).
    stall_after: Option<usize>,
    /// Writes fail with this error.
    fail: Option<WriteError>,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            chunks: Arc::default(),
            leave: Arc::new(Notify::new()),
            stall_after: None,
            fail: None,
        }
    }

    fn times_of(&self, needle: &str) -> Vec<Duration> {
        self.chunks
            .lock()
            .iter()
            .filter(|(_, b, _)| String::from_utf8_lossy(b).contains(needle))
            .map(|(t, _, _)| *t)
            .collect()
    }

    fn text(&self) -> String {
        self.chunks
            .lock()
            .iter()
            .map(|(_, b, _)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }
}

impl Downstream for Recorder {
    async fn write(&mut self, chunk: Bytes, end: bool) -> Result<(), WriteError> {
        if let Some(e) = self.fail {
            return Err(e);
        }
        if self
            .stall_after
            .is_some_and(|n| self.chunks.lock().len() >= n)
        {
            std::future::pending::<()>().await;
        }
        self.chunks.lock().push((self.start.elapsed(), chunk, end));
        Ok(())
    }

    async fn gone(&mut self) {
        self.leave.notified().await
    }
}

pub(in crate::stream) fn settings() -> StreamSettings {
    StreamSettings {
        retry: Duration::from_secs(3),
        heartbeat_interval: Duration::from_secs(15),
        heartbeat: HeartbeatKind::Comment,
        lifetime: None,
        write_timeout: Duration::from_secs(30),
        padding: 0,
        queue: 16,
        grace_period: Duration::from_secs(10),
        expires_in: None,
        compression: false,
    }
}

pub(in crate::stream) fn hub() -> Arc<Hub> {
    Hub::new(7, |_| HistoryLimits {
        max_events: 100,
        max_age: Duration::from_secs(600),
    })
}

pub(in crate::stream) fn subscribe(hub: &Arc<Hub>, queue: usize) -> crate::hub::Subscription {
    hub.subscribe(SubscribeRequest {
        channels: vec!["c".into()],
        types: None,
        last_event_id: None,
        peer: None,
        principal: None,
        queue,
    })
}

/// Publishes on "c" and waits until the event is in the streams' queues.
pub(in crate::stream) fn publish(hub: &Hub, data: &str) {
    hub.deliver(|id| Event::new(id, "message", vec!["c".into()].into_boxed_slice(), data));
    hub.settle();
}

/// Starts the stream on its own task.
fn start(
    hub: &Arc<Hub>,
    out: &Recorder,
    settings: StreamSettings,
    drain: Arc<Drain>,
) -> tokio::task::JoinHandle<End> {
    let sub = subscribe(hub, settings.queue);
    let mut out = out.clone();
    tokio::spawn(async move { pump(&mut out, sub, &settings, &drain).await })
}

#[tokio::test(start_paused = true)]
async fn opens_with_retry_and_comment_then_heartbeats_on_the_interval() {
    let (hub, out) = (hub(), Recorder::new());
    let task = start(&hub, &out, settings(), Arc::default());
    tokio::time::sleep(Duration::from_secs(46)).await;
    assert!(
        out.text().starts_with("retry: 3000\n\n: connected\n\n"),
        "{}",
        out.text()
    );
    let beats = out.times_of(": heartbeat");
    assert_eq!(
        beats,
        [15, 30, 45].map(Duration::from_secs),
        "a heartbeat every 15 s while idle"
    );
    out.leave.notify_one();
    assert_eq!(task.await.unwrap(), End::ClientLeft);
}

#[tokio::test(start_paused = true)]
async fn a_real_event_postpones_the_next_heartbeat() {
    let (hub, out) = (hub(), Recorder::new());
    let _task = start(&hub, &out, settings(), Arc::default());
    tokio::time::sleep(Duration::from_secs(10)).await;
    publish(&hub, "news");
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(out.times_of("data: news"), [Duration::from_secs(10)]);
    assert_eq!(
        out.times_of(": heartbeat"),
        [25, 40].map(Duration::from_secs)
    );
}

#[tokio::test(start_paused = true)]
async fn heartbeat_events_repeat_the_last_id() {
    let (hub, out) = (hub(), Recorder::new());
    let mut s = settings();
    s.heartbeat = HeartbeatKind::Event;
    let _task = start(&hub, &out, s, Arc::default());
    publish(&hub, "x");
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(
        out.text()
            .ends_with("id: 7-1\nevent: heartbeat\ndata: \n\n"),
        "{}",
        out.text()
    );
}

#[tokio::test(start_paused = true)]
async fn lifetime_ends_the_stream_within_ten_percent_with_a_jittered_retry() {
    for _ in 0..20 {
        let (hub, out) = (hub(), Recorder::new());
        let mut s = settings();
        s.lifetime = Some(Duration::from_secs(100));
        let task = start(&hub, &out, s, Arc::default());
        assert_eq!(task.await.unwrap(), End::Lifetime);
        let chunks = out.chunks.lock();
        let (at, last, end) = chunks.last().unwrap().clone();
        assert!(end, "the last chunk finishes the response");
        assert!(
            at >= Duration::from_secs(90) && at <= Duration::from_secs(100),
            "{at:?}"
        );
        let retry: u64 = String::from_utf8_lossy(&last)
            .trim()
            .strip_prefix("retry: ")
            .unwrap()
            .parse()
            .unwrap();
        assert!((3000..=6000).contains(&retry), "{retry}");
    }
}

#[tokio::test(start_paused = true)]
async fn drain_closes_within_the_grace_period_after_flushing_the_queue() {
    let mut ends = Vec::new();
    for _ in 0..20 {
        let (hub, out) = (hub(), Recorder::new());
        let drain = Arc::new(Drain::default());
        let task = start(&hub, &out, settings(), drain.clone());
        tokio::time::sleep(Duration::from_secs(5)).await;
        drain.start();
        publish(&hub, "last words");
        assert_eq!(task.await.unwrap(), End::Shutdown);
        assert!(out.text().contains("data: last words"));
        let (at, last, end) = out.chunks.lock().last().unwrap().clone();
        assert!(
            end && last.starts_with(b"retry: ")
                || String::from_utf8_lossy(&last).contains("retry: ")
        );
        assert!(
            at >= Duration::from_secs(5) && at <= Duration::from_secs(14),
            "{at:?}"
        );
        ends.push(at);
    }
    ends.sort();
    assert!(
        ends[19] - ends[0] > Duration::from_secs(2),
        "closes spread over the grace period: {ends:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expiring_credential_ends_the_stream_exactly_then_with_token_expired() {
    for _ in 0..10 {
        let (hub, out) = (hub(), Recorder::new());
        let mut s = settings();
        s.lifetime = Some(Duration::from_secs(100));
        s.expires_in = Some(Duration::from_secs(50));
        let task = start(&hub, &out, s, Arc::default());
        tokio::time::sleep(Duration::from_secs(10)).await;
        publish(&hub, "first");
        tokio::time::sleep(Duration::from_secs(39)).await;
        publish(&hub, "second");
        publish(&hub, "third");
        assert_eq!(task.await.unwrap(), End::TokenExpired);
        let (at, last, end) = out.chunks.lock().last().unwrap().clone();
        assert!(end, "the last chunk finishes the response");
        assert_eq!(at, Duration::from_secs(50), "no jitter: at the expiry");
        let text = out.text();
        assert!(
            text.contains("data: first")
                && text.contains("data: second")
                && text.contains("data: third"),
            "{text}"
        );
        assert_eq!(
            String::from_utf8_lossy(&last),
            "id: 7-3\nevent: token_expired\ndata: {\"reason\":\"token_expired\"}\n\n",
            "repeats the last id, and no retry: beyond the opening one"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_lifetime_wins_when_it_comes_before_the_expiry() {
    let (hub, out) = (hub(), Recorder::new());
    let mut s = settings();
    s.lifetime = Some(Duration::from_secs(100));
    s.expires_in = Some(Duration::from_secs(101));
    let task = start(&hub, &out, s, Arc::default());
    assert_eq!(task.await.unwrap(), End::Lifetime);
    assert!(!out.text().contains("token_expired"));
}

#[tokio::test(start_paused = true)]
async fn an_already_expired_credential_ends_the_stream_after_its_opening() {
    let (hub, out) = (hub(), Recorder::new());
    let mut s = settings();
    s.expires_in = Some(Duration::ZERO);
    let task = start(&hub, &out, s, Arc::default());
    assert_eq!(task.await.unwrap(), End::TokenExpired);
    let text = out.text();
    assert!(
        text.starts_with("retry: 3000\n\n: connected\n\n")
            && text.ends_with("event: token_expired\ndata: {\"reason\":\"token_expired\"}\n\n"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_expiry_before_the_drain_moment_still_ends_as_expired() {
    let (hub, out) = (hub(), Recorder::new());
    let drain = Arc::new(Drain::default());
    let mut s = settings();
    s.grace_period = Duration::from_secs(1000);
    s.expires_in = Some(Duration::from_millis(1));
    let task = start(&hub, &out, s, drain.clone());
    drain.start();
    // The drain picks a moment in 0..900 s; the expiry at 1 ms comes first (the drain drawing
    // less than 1 ms has a chance of about one in a million).
    assert_eq!(task.await.unwrap(), End::TokenExpired);
    assert!(out.text().contains("event: token_expired"));
}

#[tokio::test(start_paused = true)]
async fn a_kicked_stream_ends_at_once() {
    let (hub, out) = (hub(), Recorder::new());
    let task = start(&hub, &out, settings(), Arc::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = hub.clients().all().pop().unwrap();
    client.close(CloseReason::Kicked);
    assert_eq!(task.await.unwrap(), End::Kicked);
    assert!(hub.clients().is_empty(), "unregistered when it ends");
    let last = out.chunks.lock().last().cloned().expect("written");
    assert!(last.2, "the response is ended properly, not cut off");
}

#[tokio::test(start_paused = true)]
async fn a_kicked_stream_that_cannot_take_its_end_is_not_waited_for() {
    let (hub, mut out) = (hub(), Recorder::new());
    out.stall_after = Some(1);
    let task = start(&hub, &out, settings(), Arc::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    hub.clients()
        .all()
        .pop()
        .unwrap()
        .close(CloseReason::Kicked);
    let at = Instant::now();
    assert_eq!(task.await.unwrap(), End::Kicked);
    assert!(at.elapsed() <= KICK_WRITE_DEADLINE, "{:?}", at.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_stalled_client_is_a_slow_consumer_even_while_a_write_hangs() {
    let hub = hub();
    let mut out = Recorder::new();
    out.stall_after = Some(1);
    let mut s = settings();
    s.queue = 4;
    let task = start(&hub, &out, s, Arc::default());
    tokio::time::sleep(Duration::from_millis(10)).await;
    // One event is taken and its write hangs; four fill the queue; the sixth overflows it.
    for i in 0..6 {
        publish(&hub, &i.to_string());
        tokio::task::yield_now().await;
    }
    assert_eq!(task.await.unwrap(), End::SlowConsumer);
}

#[tokio::test(start_paused = true)]
async fn write_errors_end_the_stream_with_their_reason() {
    for (error, end) in [
        (WriteError::TimedOut, End::IdleTimeout),
        (WriteError::Closed, End::ClientLeft),
    ] {
        let hub = hub();
        let mut out = Recorder::new();
        out.fail = Some(error);
        let task = start(&hub, &out, settings(), Arc::default());
        assert_eq!(task.await.unwrap(), end);
    }
}

#[test]
fn jitter_stays_in_range() {
    for _ in 0..1000 {
        let d = jitter_down(Duration::from_secs(100));
        assert!(d <= Duration::from_secs(100) && d >= Duration::from_secs(90));
        let r = jitter_up(Duration::from_secs(3));
        assert!(r >= Duration::from_secs(3) && r <= Duration::from_secs(6));
    }
}
