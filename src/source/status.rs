//! What a source is doing, for `/stats` and the `sse_gateway_source_*` metrics. Every change
//! goes through one method here that updates the numbers, the metric and the log line together.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use crate::config::{SourceChannel, SourceConfig, SourceMode, SourceTarget};
use crate::metrics;

/// The phases of a source's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Phase {
    /// `on_demand` with nobody subscribed: not connected, on purpose.
    Idle = 0,
    Connecting = 1,
    Connected = 2,
    /// Waiting before the next attempt after a fault or an end of stream.
    Backoff = 3,
    /// The gateway is draining; the source is done.
    Stopped = 4,
    /// Another node of the cluster leads the source (Redis broker); this one takes over if that
    /// node's lease lapses.
    Standby = 5,
}

impl Phase {
    fn from_u8(n: u8) -> Phase {
        match n {
            1 => Phase::Connecting,
            2 => Phase::Connected,
            3 => Phase::Backoff,
            4 => Phase::Stopped,
            5 => Phase::Standby,
            _ => Phase::Idle,
        }
    }
}

/// A fault of the upstream (or of handing its events on), as counted and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No connection: refused, unresolvable, or timed out.
    Connect,
    /// An answer other than 200.
    Status,
    /// A 200 that is not `text/event-stream`.
    ContentType,
    /// No bytes for `stall_timeout`.
    Stalled,
    /// The connection broke mid-stream.
    Read,
    /// An event over `limits.max_event_bytes`, dropped.
    Oversized,
    /// Lines the SSE rules ignore (unknown fields, bad `retry`, `id` with NUL).
    Malformed,
    /// `channel_from_event_type` met a type that makes no valid channel name; event dropped.
    BadChannel,
    /// The broker refused the event (it is retried, not dropped).
    Publish,
}

impl Fault {
    const ALL: [Fault; 9] = [
        Fault::Connect,
        Fault::Status,
        Fault::ContentType,
        Fault::Stalled,
        Fault::Read,
        Fault::Oversized,
        Fault::Malformed,
        Fault::BadChannel,
        Fault::Publish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Connect => "connect",
            Fault::Status => "status",
            Fault::ContentType => "content_type",
            Fault::Stalled => "stalled",
            Fault::Read => "read",
            Fault::Oversized => "oversized",
            Fault::Malformed => "malformed",
            Fault::BadChannel => "bad_channel",
            Fault::Publish => "publish",
        }
    }
}

/// One source's live state. Shared by its relay task (the only writer) and `/stats`.
#[derive(Debug)]
pub struct SourceStatus {
    pub name: String,
    /// The URL, or `upstream NAME path`, for operators (never the request headers: they may
    /// hold credentials).
    target: String,
    channel: String,
    mode: SourceMode,
    phase: AtomicU8,
    events: AtomicU64,
    reconnects: AtomicU64,
    last_event_ms: AtomicU64,
    faults: [AtomicU64; Fault::ALL.len()],
    /// The upstream id of the last event ingested: what the next connection resumes from.
    last_event_id: Mutex<String>,
    last_fault: Mutex<Option<String>>,
}

impl SourceStatus {
    pub fn new(cfg: &SourceConfig) -> SourceStatus {
        let target = match &cfg.target {
            SourceTarget::Url(url) => url.clone(),
            SourceTarget::Upstream { upstream, path } => format!("upstream {upstream} {path}"),
        };
        let channel = match &cfg.channel {
            SourceChannel::Fixed(name) => name.clone(),
            SourceChannel::FromEventType { prefix } => format!("{prefix}<event type>"),
        };
        for fault in Fault::ALL {
            metrics::SOURCE_ERRORS.with_label_values(&[&cfg.name, fault.as_str()]);
        }
        metrics::SOURCE_CONNECTED
            .with_label_values(&[&cfg.name])
            .set(0);
        metrics::SOURCE_EVENTS.with_label_values(&[&cfg.name]);
        metrics::SOURCE_RECONNECTS.with_label_values(&[&cfg.name]);
        SourceStatus {
            name: cfg.name.clone(),
            target,
            channel,
            mode: cfg.mode,
            phase: AtomicU8::new(Phase::Idle as u8),
            events: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_event_ms: AtomicU64::new(0),
            faults: Default::default(),
            last_event_id: Mutex::new(String::new()),
            last_fault: Mutex::new(None),
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    pub fn set_phase(&self, phase: Phase) {
        let was = Phase::from_u8(self.phase.swap(phase as u8, Ordering::AcqRel));
        if was == phase {
            return;
        }
        let connected = metrics::SOURCE_CONNECTED.with_label_values(&[&self.name]);
        connected.set(i64::from(phase == Phase::Connected));
        match phase {
            Phase::Connected => tracing::info!(source = %self.name, "source connected"),
            Phase::Idle => tracing::info!(source = %self.name, "source idle: no subscribers"),
            Phase::Stopped => tracing::info!(source = %self.name, "source stopped"),
            Phase::Standby => {
                tracing::info!(source = %self.name, "source on standby: another node leads it")
            }
            Phase::Connecting | Phase::Backoff => {}
        }
    }

    /// A connection attempt after the first.
    pub fn reconnecting(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
        metrics::SOURCE_RECONNECTS
            .with_label_values(&[&self.name])
            .inc();
    }

    /// An event went into the broker.
    pub fn ingested(&self, upstream_id: &str) {
        self.events.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.last_event_ms
            .store(now.as_millis() as u64, Ordering::Relaxed);
        metrics::SOURCE_EVENTS
            .with_label_values(&[&self.name])
            .inc();
        metrics::SOURCE_LAST_EVENT
            .with_label_values(&[&self.name])
            .set(now.as_secs() as i64);
        let mut last = self.last_event_id.lock();
        if last.as_str() != upstream_id {
            last.clear();
            last.push_str(upstream_id);
        }
    }

    /// Counts `n` faults of one kind and logs `detail` (which never holds a credential).
    ///
    /// The log line is written when the kind's total crosses a power of two (1, 2, 4, 8, ...):
    /// an upstream that repeats a fault with every event must not flood the log at its event
    /// rate; the counters and `last_error` still see every one.
    pub fn fault(&self, fault: Fault, n: u64, detail: &str) {
        let before = self.faults[fault as usize].fetch_add(n, Ordering::Relaxed);
        let total = before + n;
        metrics::SOURCE_ERRORS
            .with_label_values(&[&self.name, fault.as_str()])
            .inc_by(n);
        if before.checked_ilog2() != total.checked_ilog2() {
            tracing::warn!(source = %self.name, kind = fault.as_str(), count = n, total, "source fault: {detail}");
        }
        *self.last_fault.lock() = Some(format!("{}: {detail}", fault.as_str()));
    }

    /// The upstream id of the last event ingested ("" before the first).
    pub fn last_event_id(&self) -> String {
        self.last_event_id.lock().clone()
    }

    /// Carries the resume point over from the status of the same source before a reload.
    pub fn resume_from(&self, earlier: &SourceStatus) {
        *self.last_event_id.lock() = earlier.last_event_id();
    }

    pub fn events_total(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// The view in `/stats`.
    pub fn snapshot(&self) -> SourceStats {
        let last_ms = self.last_event_ms.load(Ordering::Relaxed);
        SourceStats {
            name: self.name.clone(),
            target: self.target.clone(),
            channel: self.channel.clone(),
            mode: match self.mode {
                SourceMode::Always => "always",
                SourceMode::OnDemand => "on_demand",
            },
            state: self.phase(),
            connected: self.phase() == Phase::Connected,
            events_total: self.events_total(),
            reconnects_total: self.reconnects.load(Ordering::Relaxed),
            last_event_unix_ms: (last_ms > 0).then_some(last_ms),
            last_event_id: Some(self.last_event_id.lock().clone()).filter(|id| !id.is_empty()),
            errors_total: Fault::ALL
                .iter()
                .map(|f| (f.as_str(), self.faults[*f as usize].load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            last_error: self.last_fault.lock().clone(),
        }
    }
}

/// One source in `/stats` (`sources` array).
#[derive(Debug, Serialize)]
pub struct SourceStats {
    pub name: String,
    pub target: String,
    pub channel: String,
    pub mode: &'static str,
    /// `idle` | `standby` | `connecting` | `connected` | `backoff` | `stopped`.
    pub state: Phase,
    pub connected: bool,
    pub events_total: u64,
    pub reconnects_total: u64,
    pub last_event_unix_ms: Option<u64>,
    /// The upstream's id of the last event ingested (the next `Last-Event-ID` sent upstream).
    pub last_event_id: Option<String>,
    /// Faults by kind, only those that happened.
    pub errors_total: std::collections::BTreeMap<&'static str, u64>,
    pub last_error: Option<String>,
}
