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
use std::sync::Arc;
use std::time::Duration;

use pingora::tls::sign::CertifiedKey;

pub use validate::{
    load, load_str, load_str_with_env, load_with_env, ConfigError, ConfigErrors, EnvLookup,
};

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
    /// Upstream SSE streams the gateway relays into channels (`sources:`).
    pub sources: Vec<SourceConfig>,
    /// Reverse-proxy routes (`routes:`), in file order; the first that matches a request applies.
    pub routes: Vec<RouteConfig>,
    /// Upstream server pools (`upstreams:`) that routes and sources name, sorted by name.
    pub upstreams: Vec<UpstreamConfig>,
    /// Peers whose `X-Forwarded-For` names the client (`trusted_proxies:`).
    pub trusted_proxies: Vec<Cidr>,
    /// The HTTPS listener (`tls:`), serving everything the plain one does, HTTP/2 and HTTP/1.1
    /// by ALPN.
    pub tls: Option<TlsConfig>,
    /// Accept HTTP/2 with prior knowledge (h2c) on the plain listener (`http2_cleartext:`).
    pub http2_cleartext: bool,
    /// The file this came from (for messages); `None` for the embedded default.
    pub source: Option<PathBuf>,
}

/// `tls:`: where the HTTPS listener binds and the certificate it presents.
#[derive(Clone)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The pair as read and checked when the config loaded: what new handshakes present once
    /// this config is in force (a reload reads the files again).
    pub pair: Arc<CertifiedKey>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("listen", &self.listen)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
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
    /// Streams are compressed (gzip, br, zstd) when the client's `Accept-Encoding` asks.
    pub compression: bool,
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
    /// Parses a pattern: a channel name, a prefix ending in `*` (the prefix itself a valid
    /// channel name), or `*` alone. `None` for anything else. The same rules apply to patterns in
    /// the config file and in JWT claims.
    pub fn parse(text: &str) -> Option<ChannelPattern> {
        match text.strip_suffix('*') {
            Some("") => Some(ChannelPattern::Prefix(String::new())),
            Some(prefix) if is_valid_channel(prefix) => {
                Some(ChannelPattern::Prefix(prefix.to_owned()))
            }
            None if is_valid_channel(text) => Some(ChannelPattern::Exact(text.to_owned())),
            _ => None,
        }
    }

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

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub api_keys: Vec<ApiKey>,
    /// Cookie read for a JWT, default `sse_token`.
    pub cookie_name: String,
    /// JWT verification, when `auth.jwt` is set. Its key is read and checked at load, like API
    /// keys, so that a config that loads is one that can verify tokens.
    pub jwt: Option<JwtConfig>,
    /// How long a connect ticket from `POST /tickets` stays redeemable (default 30 s).
    pub ticket_ttl: Duration,
}

/// `auth.jwt`: which signatures are accepted, the key, and the claims checked besides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Never empty; all of the same family as `key` (HMAC with a secret, else the public key's
    /// kind: RS256 for an RSA key, ES256 for a P-256 key).
    pub algorithms: Vec<JwtAlgorithm>,
    /// Where the key came from (for messages).
    pub key: JwtKeySource,
    /// The key itself, read when the config was loaded.
    pub key_material: JwtKeyMaterial,
    /// Clock skew tolerated on `exp` and `nbf` (default 30 s).
    pub leeway: Duration,
    /// When set, a token must carry this `aud`.
    pub audience: Option<String>,
    /// When set, a token must carry this `iss`.
    pub issuer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a shared secret.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256, verified with a public key.
    Rs256,
    /// ECDSA P-256 with SHA-256, verified with a public key.
    Es256,
}

/// Where the JWT verification key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeySource {
    /// `secret_env`: the HS256 secret is in this environment variable.
    SecretEnv(String),
    /// `secret_file`: the HS256 secret is this file's content.
    SecretFile(PathBuf),
    /// `public_key_file`: a PEM public key for RS256/ES256.
    PublicKeyFile(PathBuf),
}

/// The JWT verification key as read from its source. Never logged (see `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub enum JwtKeyMaterial {
    /// The HS256 secret, used as raw bytes (at least 32 of them).
    Secret(Vec<u8>),
    /// A PEM public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`), already checked to be an
    /// RSA key of at least 2048 bits or a P-256 key.
    PublicKeyPem(Vec<u8>),
}

impl std::fmt::Debug for JwtKeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtKeyMaterial::Secret(_) => f.write_str("Secret(<redacted>)"),
            JwtKeyMaterial::PublicKeyPem(pem) => write!(f, "PublicKeyPem({} bytes)", pem.len()),
        }
    }
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
    /// Exact origins (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// `*` was listed: any origin (only valid without credentials).
    pub allow_any_origin: bool,
    pub allow_credentials: bool,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Concurrent streams on this node; over it new streams get 503.
    pub max_connections: usize,
    /// Concurrent streams per client IP; over it 429. `None` (the default) = no per-IP limit,
    /// because many users can share one address behind NAT or a load balancer.
    pub max_connections_per_ip: Option<usize>,
    /// Concurrent streams per authenticated subject; over it 429. `None` (default) = no limit.
    pub max_connections_per_user: Option<usize>,
    /// New streams per second per client IP (token bucket); over it 429. `None` = no limit.
    pub connect_rate_per_ip: Option<RateLimit>,
    /// Publishes per second per credential (token bucket); over it 429. `None` = no limit.
    pub publish_rate: Option<RateLimit>,
    /// `POST /tickets` per second per credential (token bucket); over it 429. Always on (10/s,
    /// burst 20, by default), so one credential cannot fill the ticket store.
    pub ticket_rate: RateLimit,
    /// Largest `POST /broadcast` body / event data, in bytes (413 above it).
    pub max_event_bytes: usize,
    pub max_channels_per_connection: usize,
    /// The deadline of a whole request head, hence also how long an idle HTTP/1.1 keep-alive
    /// connection waits for its next request; and how long an HTTP/2 connection with no request
    /// and no stream in flight stays open.
    pub header_read_timeout: Duration,
}

/// A token bucket: refilled at `per_second`, holding at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// At least 1.
    pub per_second: u32,
    /// At least 1.
    pub burst: u32,
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

/// One entry of `sources:`: an upstream SSE stream relayed into channels. The gateway holds one
/// connection per source however many clients subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Unique among sources; used in logs and metrics labels.
    pub name: String,
    pub target: SourceTarget,
    pub channel: SourceChannel,
    pub mode: SourceMode,
    /// With `on_demand`: how long the connection stays up after the last subscriber leaves, so
    /// a page reload does not cost an upstream reconnect.
    pub linger: Duration,
    /// No bytes from the upstream for this long (events or its heartbeats) means the connection
    /// is dead even if TCP has not noticed: the gateway reconnects.
    pub stall_timeout: Duration,
    /// Extra request headers, validated as HTTP header names and values. Values may be
    /// credentials: never log them.
    pub headers: Vec<(String, String)>,
}

/// Where a source connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceTarget {
    /// `url:` an absolute `http://` or `https://` URL.
    Url(String),
    /// `upstream:` + `path:`: a pool from `upstreams:` (balanced and health-checked like routes).
    Upstream { upstream: String, path: String },
}

/// Which channel a source's events are published to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceChannel {
    /// `channel:` every event goes to this one channel.
    Fixed(String),
    /// `channel_from_event_type: true`: each event goes to the channel `channel_prefix` + its
    /// `event:` field (events for which that is not a valid channel name are dropped and counted).
    FromEventType { prefix: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMode {
    /// Connected from startup to shutdown (the default), so history fills even with no client.
    Always,
    /// Connected only while at least one client subscribes to one of its channels.
    OnDemand,
}

/// One entry of `routes:`: requests it matches are proxied to an upstream pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Starts with `/`; matched against the request path.
    pub path_prefix: String,
    /// When set, the route only applies to requests for this `Host` (without port).
    pub host: Option<String>,
    /// Name of an entry of `upstreams:` (checked to exist).
    pub upstream: String,
    /// Whether `path_prefix` is removed from the path sent upstream (default false).
    pub strip_prefix: bool,
    pub auth: RouteAuth,
    /// Longest wait for each read from the upstream; `None` (`0s`) waits for ever, for event
    /// streams. Default 60 s.
    pub timeout: Option<Duration>,
    /// Requests per client address.
    pub rate_limit: Option<RateLimit>,
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAuth {
    /// Anyone (the backend decides).
    Public,
    /// Any valid API key or JWT (headers only); the backend learns who in
    /// `X-Authenticated-User`.
    Authenticated,
}

/// One entry of `upstreams:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub name: String,
    /// Never empty. Host names are resolved when the pool is built (and rebuilt on reload).
    pub servers: Vec<ServerConfig>,
    pub balance: Balance,
    /// What `consistent_hash` hashes.
    pub hash_key: HashKey,
    /// `None` = no active checks.
    pub health_check: Option<HealthCheckConfig>,
    /// `None` = servers are never ejected for their answers.
    pub passive: Option<PassiveConfig>,
    pub connect_timeout: Duration,
    /// HTTPS to the servers.
    pub tls: bool,
    /// The name sent in TLS's SNI and checked against the certificate; default the host of each
    /// server's address.
    pub sni: Option<String>,
    /// Certificates (PEM) that sign the servers' certificates, instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// A server of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `host:port`.
    pub addr: String,
    /// Its share of requests relative to the others (default 1).
    pub weight: usize,
}

/// How an upstream pool picks a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// The default.
    RoundRobin,
    Random,
    /// By a hash of [`HashKey`] (Ketama), so a key keeps reaching the same server.
    ConsistentHash,
    /// The server with the fewest requests in flight (open event streams included).
    LeastConnections,
}

/// What `consistent_hash` hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// The default.
    ClientIp,
    /// A request header's value (lowercase name).
    Header(String),
    Cookie(String),
    Path,
}

/// Active health check: `GET path` on every server each `interval`; a 2xx within `timeout` is a
/// success. A server turns healthy after `healthy_after` successes in a row, unhealthy after
/// `unhealthy_after` failures in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_after: usize,
    pub unhealthy_after: usize,
}

/// Passive health: `failures` connect failures or 502/503/504 answers in a row eject a server
/// for `eject_for`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassiveConfig {
    pub failures: u32,
    pub eject_for: Duration,
}

/// An address range, `10.0.0.0/8` or `::1/128` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `None` unless `text` is an address with an optional prefix length that fits it.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
            None => max,
        };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The shipped `gateway.yaml`, compiled in: what runs when no file is given and none exists.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../gateway.yaml");

impl Config {
    /// The embedded default configuration.
    pub fn embedded_default() -> Result<Config, ConfigErrors> {
        load_str(EMBEDDED_DEFAULT, None)
    }

    /// [`embedded_default`](Self::embedded_default), with variables looked up in `env` (see
    /// [`load_with_env`]).
    pub fn embedded_default_with_env(env: EnvLookup) -> Result<Config, ConfigErrors> {
        load_str_with_env(EMBEDDED_DEFAULT, None, env)
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
        self.source
            .as_deref()
            .unwrap_or(Path::new("<embedded gateway.yaml>"))
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
/// Event types the gateway itself sends to tell a client something about its stream: an app's
/// event of one of these types would be taken for the gateway's word by every client (the
/// TypeScript, Rust and Python clients act on them), so none can be published.
pub const RESERVED_EVENT_TYPES: [&str; 4] =
    ["reset", "token_expired", "access_revoked", "heartbeat"];

/// Whether `name` is one of [`RESERVED_EVENT_TYPES`].
pub fn is_reserved_event_type(name: &str) -> bool {
    RESERVED_EVENT_TYPES.contains(&name)
}

pub fn is_valid_event_type(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}
