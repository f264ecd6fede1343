//! Notifications: what a POST may contain, how one is numbered, and the hub that keeps a
//! bounded history for `Last-Event-ID` replay and fans new ones out to open streams.
//!
//! Ids are `<boot-unix-ms>-<seq>`: `seq` counts from 1 in this process, and the boot prefix
//! makes sure an id remembered by a client from an earlier run never names an event of this
//! run (such an id is "unknown", and the client gets the whole retained history instead).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::sse::Frame;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest body, in characters.
pub const MAX_BODY_CHARS: usize = 2000;
/// How many notifications a stream may fall behind before it is disconnected (it then
/// reconnects and catches up from history, which is what `Last-Event-ID` is for).
pub const BROADCAST_CAPACITY: usize = 1024;

/// How important a notification is; the frontend colours by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Info,
    Success,
    Warning,
    Error,
}

impl Level {
    /// The order generated notifications cycle through.
    const CYCLE: [Level; 4] = [Level::Info, Level::Success, Level::Warning, Level::Error];
}

/// A published notification, as sent in `data:` and as the 201 reply to a POST.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    pub title: String,
    pub body: String,
    pub level: Level,
    /// RFC 3339, UTC, millisecond precision.
    pub time: String,
}

/// The body of `POST /notifications`. Unknown fields are refused so that a typo (`"titel"`)
/// is reported instead of silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNotification {
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub level: Level,
}

impl NewNotification {
    /// Reads and checks a POSTed JSON value: fields, types, level and lengths.
    pub fn from_json(value: serde_json::Value) -> Result<Self, ApiError> {
        let new = Self::deserialize(value).map_err(|e| {
            ApiError::bad_request("invalid_notification", format!("invalid notification: {e}"))
        })?;
        new.validate()?;
        Ok(new)
    }

    fn validate(&self) -> Result<(), ApiError> {
        let title_chars = self.title.chars().count();
        if title_chars == 0 || self.title.trim().is_empty() {
            return Err(ApiError::bad_request(
                "invalid_notification",
                "title must not be empty",
            ));
        }
        if title_chars > MAX_TITLE_CHARS {
            return Err(ApiError::bad_request(
                "invalid_notification",
                format!("title is longer than {MAX_TITLE_CHARS} characters"),
            ));
        }
        if self.body.chars().count() > MAX_BODY_CHARS {
            return Err(ApiError::bad_request(
                "invalid_notification",
                format!("body is longer than {MAX_BODY_CHARS} characters"),
            ));
        }
        Ok(())
    }
}

/// What a new stream starts with: the retained events to replay, and a receiver of everything
/// published after them.
pub struct Subscription {
    pub replay: Vec<Arc<Frame>>,
    pub live: broadcast::Receiver<Arc<Frame>>,
}

struct History {
    next_seq: u64,
    events: VecDeque<Arc<Frame>>,
}

/// Numbers, retains and fans out notifications.
pub struct NotificationHub {
    boot_ms: u128,
    capacity: usize,
    history: Mutex<History>,
    sender: broadcast::Sender<Arc<Frame>>,
    published: AtomicU64,
}

impl NotificationHub {
    /// A hub retaining the last `capacity` notifications (at least one).
    pub fn new(boot_ms: u128, capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        let capacity = capacity.max(1);
        Self {
            boot_ms,
            capacity,
            history: Mutex::new(History {
                next_seq: 1,
                events: VecDeque::with_capacity(capacity.min(4096)),
            }),
            sender,
            published: AtomicU64::new(0),
        }
    }

    /// How many notifications were published since start.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Numbers `new`, retains it and sends it to every open stream. Numbering, retaining and
    /// sending happen under one lock, so history and the broadcast see one order.
    pub fn publish(&self, new: NewNotification) -> Notification {
        let mut history = self.lock();
        let seq = history.next_seq;
        history.next_seq += 1;
        let notification = Notification {
            id: format!("{}-{seq}", self.boot_ms),
            title: new.title,
            body: new.body,
            level: new.level,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        };
        // Serializing a struct of strings cannot fail; fall back to an empty object regardless.
        let data = serde_json::to_string(&notification).unwrap_or_else(|_| "{}".to_owned());
        let frame = Arc::new(Frame {
            seq,
            id: notification.id.clone(),
            event: "notification",
            data,
        });
        if history.events.len() >= self.capacity {
            history.events.pop_front();
        }
        history.events.push_back(Arc::clone(&frame));
        // An error only means that no stream is open.
        let _ = self.sender.send(frame);
        self.published.fetch_add(1, Ordering::Relaxed);
        notification
    }

    /// Opens a subscription. With no `last_event_id`, live events only. When it names a
    /// retained event, every retained event after it; otherwise (unknown, from an earlier
    /// run, or evicted) the whole retained history, so nothing retained is lost.
    ///
    /// The receiver is created under the same lock as the snapshot, so the live part starts
    /// exactly after the replay; the stream still skips live events at or below the last
    /// replayed sequence number as a second guard against duplicates.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        let history = self.lock();
        let live = self.sender.subscribe();
        let replay = match last_event_id {
            None => Vec::new(),
            Some(id) => match history.events.iter().position(|f| f.id == id) {
                Some(index) => history.events.iter().skip(index + 1).cloned().collect(),
                None => history.events.iter().cloned().collect(),
            },
        };
        Subscription { replay, live }
    }

    /// The retained notifications' ids, oldest first (for tests and diagnostics).
    pub fn retained_ids(&self) -> Vec<String> {
        self.lock().events.iter().map(|f| f.id.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, History> {
        // A panic while holding the lock cannot leave History inconsistent (each field is
        // updated by one statement), so a poisoned lock is still usable.
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Publishes "Periodic notification #N" every `interval` until `stop` is cancelled, cycling
/// through the levels. A zero interval publishes nothing.
pub async fn run_periodic(hub: Arc<NotificationHub>, interval: Duration, stop: CancellationToken) {
    if interval.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        n += 1;
        let level = Level::CYCLE[(n as usize - 1) % Level::CYCLE.len()];
        hub.publish(NewNotification {
            title: format!("Periodic notification #{n}"),
            body: format!("Generated every {}", humantime::format_duration(interval)),
            level,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new(title: &str) -> NewNotification {
        NewNotification {
            title: title.to_owned(),
            body: String::new(),
            level: Level::Info,
        }
    }

    #[test]
    fn validation() {
        let ok = NewNotification::from_json(json!({"title": "hi"})).expect("valid");
        assert_eq!(ok, new("hi"));
        for bad in [
            json!({}),
            json!({"title": ""}),
            json!({"title": "   "}),
            json!({"title": 5}),
            json!({"title": "x".repeat(201)}),
            json!({"title": "x", "body": "y".repeat(2001)}),
            json!({"title": "x", "level": "fatal"}),
            json!({"title": "x", "extra": 1}),
            json!([1, 2]),
        ] {
            let err = NewNotification::from_json(bad.clone()).expect_err("invalid");
            assert_eq!(err.code, "invalid_notification", "{bad}");
        }
        // Lengths are in characters, not bytes.
        assert!(NewNotification::from_json(json!({"title": "é".repeat(200)})).is_ok());
    }

    #[test]
    fn ids_replay_and_bound() {
        let hub = NotificationHub::new(42, 3);
        let ids: Vec<String> = (0..5)
            .map(|i| hub.publish(new(&format!("n{i}"))).id)
            .collect();
        assert_eq!(ids[0], "42-1");
        assert_eq!(ids[4], "42-5");
        assert_eq!(hub.retained_ids(), ["42-3", "42-4", "42-5"]);
        let seqs = |s: Subscription| s.replay.iter().map(|f| f.seq).collect::<Vec<_>>();
        assert_eq!(seqs(hub.subscribe(None)), Vec::<u64>::new());
        assert_eq!(seqs(hub.subscribe(Some("42-3"))), [4, 5]);
        assert_eq!(seqs(hub.subscribe(Some("42-5"))), Vec::<u64>::new());
        // Evicted, unknown, and from another boot: the whole retained history.
        assert_eq!(seqs(hub.subscribe(Some("42-1"))), [3, 4, 5]);
        assert_eq!(seqs(hub.subscribe(Some("7-4"))), [3, 4, 5]);
        assert_eq!(hub.published(), 5);
    }
}
