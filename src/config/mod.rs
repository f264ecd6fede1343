//! Configuration: the YAML file (`file`), its checked form (`Config`, built by `validate`).
//!
//! `file.rs` mirrors `gateway.yaml` key by key and is only ever read by `validate.rs`, which turns
//! it into the types below: durations parsed, patterns compiled, secrets resolved, and *every*
//! problem collected as `file:line:col: message` rather than stopping at the first one. The rest
//! of the gateway only sees `Config`, so the file format can evolve without touching it.

mod file;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use validate::{load, load_str, ConfigError, ConfigErrors};

/// The gateway's own configuration, checked. Built only by [`load`] / [`load_str`].
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the one HTTP listener binds. Port 0 picks a free port (the bound address is printed).
    pub listen: SocketAddr,
    /// The built web UI, served at `/` when the directory exists.
    pub static_dir: Option<PathBuf>,
    pub sse: SseConfig,
    /// History limits for channels that no `channels:` rule gives their own.
    pub history: HistoryLimits,
    /// Channel rules; the first whose pattern matches a channel applies to it.
    pub channels: Vec<ChannelRule>,
    pub broker: BrokerConfig,
    pub auth: AuthConfig,
    pub cors: CorsConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub shutdown: ShutdownConfig,
    /// The file this came from (for messages); `None` for the embedded default.
    pub source: Option<PathBuf>,
}

/// `sse:`: how streams are framed and how long they live.
#[derive(Debug, Clone)]
pub struct SseConfig {
    /// The stream endpoint, default `/events`.
    pub path: String,
    /// Sent as `retry:` when a stream opens.
    pub retry: Duration,
    pub heartbeat_interval: Duration,
    pub heartbeat: HeartbeatKind,
    /// Events buffered per client before it counts as slow and is disconnected. At least 1.
    pub client_queue: usize,
    /// `None` = streams live until the client leaves. Jittered by up to 10% when set.
    pub max_connection_lifetime: Option<Duration>,
    /// `None` = no idle timeout. A write (event or heartbeat) that cannot complete within this
    /// time means the peer is gone.
    pub idle_timeout: Option<Duration>,
    /// Bytes of comment padding sent when a stream opens, for buffering proxies.
    pub padding: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatKind {
    /// A `:` comment line: invisible to `EventSource` listeners.
    Comment,
    /// A named `event: heartbeat` the application can observe.
    Event,
}

/// How much history a channel keeps for resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// 0 disables history (every resume of that channel gets `reset`).
    pub max_events: usize,
    pub max_age: Duration,
}

/// A channel name pattern: an exact name, or a prefix (written with a trailing `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelPattern {
    Exact(String),
    /// `"user.*"` is `Prefix("user.")`; `"*"` is `Prefix("")` and matches every channel.
    Prefix(String),
}

impl ChannelPattern {
    pub fn matches(&self, channel: &str) -> bool {
        match self {
            ChannelPattern::Exact(name) => name == channel,
            ChannelPattern::Prefix(prefix) => channel.starts_with(prefix.as_str()),
        }
    }
}

/// Who may subscribe to or publish on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Anyone.
    Public,
    /// Any valid credential.
    Authenticated,
    /// A credential whose patterns cover the channel (the default).
    Claims,
}

/// One entry of `channels:`.
#[derive(Debug, Clone)]
pub struct ChannelRule {
    pub pattern: ChannelPattern,
    pub subscribe: Policy,
    pub publish: Policy,
    /// This rule's history limits (the top-level `history:` unless the rule sets its own).
    pub history: HistoryLimits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerConfig {
    /// Single node, everything in this process.
    Memory,
    /// Several nodes sharing one Redis.
    Redis { url: String },
}

#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub api_keys: Vec<ApiKey>,
    /// Cookie read for a JWT, default `sse_token`.
    pub cookie_name: String,
}

/// An API key, its secret already read from its env var or file. Never logged (see `Debug`).
#[derive(Clone)]
pub struct ApiKey {
    pub name: String,
    pub key: String,
    /// Channels this key may publish to.
    pub publish: Vec<ChannelPattern>,
    /// Whether this key may use the admin endpoints.
    pub admin: bool,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("publish", &self.publish)
            .field("admin", &self.admin)
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct CorsConfig {
    /// Exact origins (scheme://host[:port]).
    pub allowed_origins: Vec<String>,
    /// `*` was listed: any origin (only valid without credentials).
    pub allow_any_origin: bool,
    pub allow_credentials: bool,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Concurrent streams on this node; over it new streams get 503.
    pub max_connections: usize,
    /// Largest `POST /broadcast` body / event data, in bytes (413 above it).
    pub max_event_bytes: usize,
    pub max_channels_per_connection: usize,
    pub header_read_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct ShutdownConfig {
    /// Streams are closed spread over this window after SIGTERM/SIGINT.
    pub grace_period: Duration,
}

/// The shipped `gateway.yaml`, compiled in: what runs when no file is given and none exists.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../gateway.yaml");

impl Config {
    /// The embedded default configuration.
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        load_str(EMBEDDED_DEFAULT, None)
    }

    /// The rule that applies to `channel`, if any.
    pub fn channel_rule(&self, channel: &str) -> Option<&ChannelRule> {
        self.channels.iter().find(|r| r.pattern.matches(channel))
    }

    /// History limits for `channel`.
    pub fn history_for(&self, channel: &str) -> HistoryLimits {
        self.channel_rule(channel)
            .map(|r| r.history)
            .unwrap_or(self.history)
    }

    /// The path shown in messages.
    pub fn source_name(&self) -> &Path {
        self.source.as_deref().unwrap_or(Path::new("<embedded gateway.yaml>"))
    }
}

/// Whether `name` is a valid channel name: `[A-Za-z0-9._:/-]{1,128}`.
pub fn is_valid_channel(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

/// Whether `name` is a valid event type: `[A-Za-z0-9._:-]{1,64}`.
pub fn is_valid_event_type(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}
