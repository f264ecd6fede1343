//! From the file format to the checked [`Config`], reporting every problem at once.
//!
//! Each section is taken apart with an exhaustive `let Raw.. { .. } = ..;` so that a key added
//! to `file.rs` cannot be forgotten here: the compiler asks where it goes. Bad values are
//! reported through [`Checker`] and replaced by their default so that checking goes on; the
//! `Config` built alongside is thrown away when anything was reported.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::auth::jwt::PublicKeyKind;

use super::file::{
    self, Pos, RawApiKey, RawAuth, RawBroker, RawChannel, RawConfig, RawCors, RawHealthCheck,
    RawHistory, RawJwt, RawLimits, RawMetrics, RawRate, RawRoute, RawShutdown, RawSource, RawSse,
    RawUpstream,
};
use super::{
    is_valid_channel, ApiKey, AuthConfig, Balance, BrokerConfig, ChannelPattern, ChannelRule,
    Config, CorsConfig, HealthCheckConfig, HeartbeatKind, HistoryLimits, JwtAlgorithm, JwtConfig,
    JwtKeyMaterial, JwtKeySource, LimitsConfig, MetricsConfig, Policy, RateLimit, RouteConfig,
    ShutdownConfig, SourceChannel, SourceConfig, SourceMode, SourceTarget, SseConfig,
    UpstreamConfig,
};

/// The shortest HS256 secret accepted: the hash's own size (RFC 7518 section 3.2).
const MIN_HMAC_SECRET_BYTES: usize = 32;

/// How messages name a config that did not come from a file.
const EMBEDDED_NAME: &str = "<embedded gateway.yaml>";

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ConfigError {
    /// The path as given to [`load`], or `<embedded gateway.yaml>`.
    pub file: String,
    /// 1-based. Problems with the file as a whole (it cannot be read) are placed at 1:1.
    pub line: usize,
    /// 1-based, in characters.
    pub col: usize,
    /// Starts with the key concerned (`sse.retry: ...`). Never contains a secret.
    pub message: String,
}

/// Every problem found in a config file, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

/// One `file:line:col: message` per line, as `sse-gateway --check` prints them.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where `key_env` and `secret_env` name their variables: the value of one, `None` when it is
/// unset. [`load`] and [`load_str`] look in the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Reads and checks the config file at `path`.
///
/// Secrets (API keys) are read from their environment variables and files now, so a config
/// that loads is one that can serve.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, &process_env)
}

/// [`load`], with the variables of `key_env` and `secret_env` looked up in `env` rather than in
/// the process environment: what tests use, since setting a process variable while other
/// threads may read the environment is a data race.
pub fn load_with_env(path: &Path, env: EnvLookup) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str_with_env(&text, Some(path), env),
        Err(err) => Err(ConfigErrors {
            errors: vec![ConfigError {
                file: path.display().to_string(),
                line: Pos::START.line,
                col: Pos::START.col,
                message: format!("cannot read config file: {err}"),
            }],
        }),
    }
}

/// Checks config `text`; `source` is the file it came from (`None` for the embedded default),
/// used in messages and kept in [`Config::source`].
pub fn load_str(text: &str, source: Option<&Path>) -> Result<Config, ConfigErrors> {
    load_str_with_env(text, source, &process_env)
}

/// [`load_str`], with variables looked up in `env` (see [`load_with_env`]).
pub fn load_str_with_env(
    text: &str,
    source: Option<&Path>,
    env: EnvLookup,
) -> Result<Config, ConfigErrors> {
    let file_name = source.map_or_else(|| EMBEDDED_NAME.to_owned(), |p| p.display().to_string());
    let to_errors = |mut found: Vec<(Pos, String)>| {
        // Stable: problems at one place keep the order they were found in.
        found.sort_by_key(|(pos, _)| *pos);
        ConfigErrors {
            errors: found
                .into_iter()
                .map(|(pos, message)| ConfigError {
                    file: file_name.clone(),
                    line: pos.line,
                    col: pos.col,
                    message,
                })
                .collect(),
        }
    };
    let parsed = file::parse(text).map_err(|f| to_errors(vec![(f.pos, f.message)]))?;
    let mut checker = Checker {
        errors: Vec::new(),
        env,
    };
    for key in &parsed.unknown {
        checker.at(key.pos, format!("{}: unknown key", key.path));
    }
    let config = checker.config(parsed.raw, source);
    if checker.errors.is_empty() {
        Ok(config)
    } else {
        Err(to_errors(checker.errors))
    }
}

/// Collects problems while building the checked config. Its helpers report what is wrong with
/// a value and return `None`; callers then fall back to the default and carry on.
struct Checker<'e> {
    errors: Vec<(Pos, String)>,
    /// Where secrets named by an environment variable are looked up.
    env: EnvLookup<'e>,
}

/// Defaults of the reference configuration in the contract.
mod default {
    use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
    use std::time::Duration;

    use super::RateLimit;

    pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8080));
    pub const STATIC_DIR: &str = "frontend-react/dist";
    pub const SSE_PATH: &str = "/events";
    pub const RETRY: Duration = Duration::from_secs(3);
    pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(15);
    pub const CLIENT_QUEUE: usize = 1024;
    pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(3600);
    pub const HISTORY_MAX_EVENTS: usize = 1000;
    pub const HISTORY_MAX_AGE: Duration = Duration::from_secs(600);
    pub const COOKIE_NAME: &str = "sse_token";
    pub const TICKET_TTL: Duration = Duration::from_secs(30);
    /// A ticket is meant to be redeemed right after it is fetched; a long-lived one is just a
    /// bearer token in a URL.
    pub const MAX_TICKET_TTL: Duration = Duration::from_secs(300);
    pub const JWT_LEEWAY: Duration = Duration::from_secs(30);
    /// Leeway is for clock skew; minutes more would keep expired tokens working.
    pub const MAX_JWT_LEEWAY: Duration = Duration::from_secs(300);
    pub const MAX_CONNECTIONS: usize = 19_000;
    /// A page fetches a ticket per stream it opens or reopens: a few a second at most.
    pub const TICKET_RATE: RateLimit = RateLimit {
        per_second: 10,
        burst: 20,
    };
    pub const MAX_EVENT_BYTES: usize = 65_536;
    pub const MAX_CHANNELS_PER_CONNECTION: usize = 32;
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const METRICS_PATH: &str = "/metrics";
    pub const GRACE_PERIOD: Duration = Duration::from_secs(10);
    pub const HEALTH_CHECK_PATH: &str = "/healthz";
    pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
    pub const LINGER: Duration = Duration::from_secs(30);
    /// Three of the usual 15 s heartbeats.
    pub const STALL_TIMEOUT: Duration = Duration::from_secs(45);
    /// More than this much padding per stream is a typo, not a proxy workaround.
    pub const MAX_PADDING: usize = 1 << 20;
}

impl Checker<'_> {
    fn at(&mut self, pos: Pos, message: impl Into<String>) {
        self.errors.push((pos, message.into()));
    }

    fn err<T>(&mut self, at: &Spanned<T>, message: impl Into<String>) {
        self.at(Pos::of(at.referenced), message);
    }

    /// A list entry's `name` (entry `i`, at `at`): present, not empty, and not used by an earlier
    /// entry. `names` maps each name to the entry that used it first; `duplicate(name, first)`
    /// words the message for a repeat. `None` when the entry has no usable name.
    fn entry_name(
        &mut self,
        at: &str,
        entry_pos: Pos,
        i: usize,
        name: Option<Spanned<String>>,
        names: &mut HashMap<String, usize>,
        duplicate: impl FnOnce(&str, usize) -> String,
    ) -> Option<String> {
        match name {
            Some(name) if !name.value.is_empty() => {
                if let Some(first) = names.insert(name.value.clone(), i) {
                    self.err(
                        &name,
                        format!("{at}.name: {}", duplicate(&name.value, first)),
                    );
                }
                Some(name.value)
            }
            Some(name) => {
                self.err(&name, format!("{at}.name: must not be empty"));
                None
            }
            None => {
                self.at(entry_pos, format!("{at}: missing `name`"));
                None
            }
        }
    }

    fn config(&mut self, raw: RawConfig, source: Option<&Path>) -> Config {
        let RawConfig {
            listen,
            static_dir,
            sse,
            history,
            channels,
            broker,
            sources,
            routes,
            upstreams,
            auth,
            cors,
            limits,
            metrics,
            shutdown,
        } = raw;
        let listen = self.listen(listen.as_ref());
        let static_dir = match static_dir {
            // An empty string turns the web UI off.
            Some(dir) if dir.value.is_empty() => None,
            Some(dir) => Some(PathBuf::from(dir.value)),
            None => Some(PathBuf::from(default::STATIC_DIR)),
        };
        let sse = self.sse(sse.unwrap_or_default());
        let history = self.history(
            "history",
            history.unwrap_or_default(),
            HistoryLimits {
                max_events: default::HISTORY_MAX_EVENTS,
                max_age: default::HISTORY_MAX_AGE,
            },
        );
        let channels = self.channels(channels.unwrap_or_default(), history);
        let broker = self.broker(broker);
        let upstreams = self.upstreams(upstreams.unwrap_or_default());
        let sources = self.sources(sources.unwrap_or_default(), &upstreams);
        let routes = self.routes(routes.unwrap_or_default(), &upstreams);
        let auth = self.auth(auth.unwrap_or_default());
        let cors = self.cors(cors.unwrap_or_default());
        let limits = self.limits(limits.unwrap_or_default());
        let metrics = self.metrics(metrics.unwrap_or_default(), &sse.path);
        let shutdown = self.shutdown(shutdown.unwrap_or_default());
        Config {
            listen,
            static_dir,
            sse,
            history,
            channels,
            broker,
            auth,
            cors,
            limits,
            metrics,
            shutdown,
            sources,
            routes,
            upstreams,
            source: source.map(Path::to_path_buf),
        }
    }

    fn listen(&mut self, listen: Option<&Spanned<String>>) -> SocketAddr {
        let Some(listen) = listen else {
            return default::LISTEN;
        };
        match parse_listen(&listen.value) {
            Some(addr) => addr,
            None => {
                self.err(
                    listen,
                    format!(
                        "listen: invalid address {:?}: expected ip:port, like 0.0.0.0:8080, \
                         127.0.0.1:0 or [::]:8080",
                        listen.value
                    ),
                );
                default::LISTEN
            }
        }
    }

    fn sse(&mut self, raw: RawSse) -> SseConfig {
        let RawSse {
            path,
            retry,
            heartbeat_interval,
            heartbeat,
            client_queue,
            max_connection_lifetime,
            idle_timeout,
            padding,
        } = raw;
        let padding = match padding {
            Some(raw) => match self.count("sse.padding", Some(&raw), 0, 0) {
                n if n > default::MAX_PADDING => {
                    let max = default::MAX_PADDING;
                    self.err(&raw, format!("sse.padding: at most {max} bytes, got {n}"));
                    0
                }
                n => n,
            },
            None => 0,
        };
        SseConfig {
            path: self.http_path("sse.path", path.as_ref(), default::SSE_PATH),
            retry: self.duration("sse.retry", retry.as_ref(), default::RETRY),
            heartbeat_interval: self.positive_duration(
                "sse.heartbeat_interval",
                heartbeat_interval.as_ref(),
                default::HEARTBEAT_INTERVAL,
            ),
            heartbeat: self.one_of(
                "sse.heartbeat",
                heartbeat.as_ref(),
                &[
                    ("comment", HeartbeatKind::Comment),
                    ("event", HeartbeatKind::Event),
                ],
                HeartbeatKind::Comment,
            ),
            client_queue: self.count(
                "sse.client_queue",
                client_queue.as_ref(),
                1,
                default::CLIENT_QUEUE,
            ),
            max_connection_lifetime: self.optional_duration(
                "sse.max_connection_lifetime",
                max_connection_lifetime.as_ref(),
                Some(default::MAX_CONNECTION_LIFETIME),
            ),
            idle_timeout: self.optional_duration("sse.idle_timeout", idle_timeout.as_ref(), None),
            padding,
        }
    }

    /// `history:` keys over `base`, key by key (so a channel rule may set only one of them).
    fn history(&mut self, key: &str, raw: RawHistory, base: HistoryLimits) -> HistoryLimits {
        let RawHistory {
            max_events,
            max_age,
        } = raw;
        HistoryLimits {
            max_events: self.count(
                &format!("{key}.max_events"),
                max_events.as_ref(),
                0,
                base.max_events,
            ),
            max_age: self.duration(&format!("{key}.max_age"), max_age.as_ref(), base.max_age),
        }
    }

    fn channels(
        &mut self,
        raw: Vec<Spanned<RawChannel>>,
        history: HistoryLimits,
    ) -> Vec<ChannelRule> {
        let mut seen: Vec<ChannelPattern> = Vec::new();
        let mut rules = Vec::with_capacity(raw.len());
        for (i, entry) in raw.into_iter().enumerate() {
            let at = format!("channels[{i}]");
            let RawChannel {
                name,
                subscribe,
                publish,
                history: rule_history,
            } = entry.value;
            let Some(name) = name else {
                self.at(
                    Pos::of(entry.referenced),
                    format!("{at}: missing `name` (a channel name, or a prefix ending in *)"),
                );
                continue;
            };
            let Some(pattern) = self.pattern(&format!("{at}.name"), &name) else {
                continue;
            };
            if seen.contains(&pattern) {
                self.err(
                    &name,
                    format!(
                        "{at}.name: {:?} is already listed above; only the first rule for a \
                         channel applies",
                        name.value
                    ),
                );
            }
            seen.push(pattern.clone());
            rules.push(ChannelRule {
                pattern,
                subscribe: self.policy(&format!("{at}.subscribe"), subscribe.as_ref()),
                publish: self.policy(&format!("{at}.publish"), publish.as_ref()),
                history: self.history(
                    &format!("{at}.history"),
                    rule_history.unwrap_or_default(),
                    history,
                ),
            });
        }
        rules
    }

    fn policy(&mut self, key: &str, value: Option<&Spanned<String>>) -> Policy {
        self.one_of(
            key,
            value,
            &[
                ("public", Policy::Public),
                ("authenticated", Policy::Authenticated),
                ("claims", Policy::Claims),
            ],
            Policy::Claims,
        )
    }

    fn broker(&mut self, raw: Option<Spanned<RawBroker>>) -> BrokerConfig {
        let Some(raw) = raw else {
            return BrokerConfig::Memory;
        };
        let RawBroker { kind, url } = raw.value;
        #[derive(Clone, Copy)]
        enum Kind {
            Memory,
            Redis,
        }
        let kind = self.one_of(
            "broker.kind",
            kind.as_ref(),
            &[("memory", Kind::Memory), ("redis", Kind::Redis)],
            Kind::Memory,
        );
        match (kind, url) {
            (Kind::Memory, None) => BrokerConfig::Memory,
            (Kind::Memory, Some(url)) => {
                self.err(&url, "broker.url: only used with `kind: redis`");
                BrokerConfig::Memory
            }
            (Kind::Redis, None) => {
                self.at(
                    Pos::of(raw.referenced),
                    "broker: `kind: redis` needs `url: redis://host:port`",
                );
                BrokerConfig::Memory
            }
            (Kind::Redis, Some(url)) => {
                if let Err(problem) = crate::broker::redis::check_url(&url.value) {
                    // The URL may carry a password: not echoed.
                    self.err(&url, format!("broker.url: {problem}"));
                }
                BrokerConfig::Redis { url: url.value }
            }
        }
    }

    fn upstreams(&mut self, raw: BTreeMap<String, Spanned<RawUpstream>>) -> Vec<UpstreamConfig> {
        let mut out = Vec::with_capacity(raw.len());
        for (name, entry) in raw {
            let at = format!("upstreams.{name}");
            let RawUpstream {
                servers,
                balance,
                health_check,
            } = entry.value;
            let servers = servers.unwrap_or_default();
            if servers.is_empty() {
                self.at(
                    Pos::of(entry.referenced),
                    format!("{at}: needs `servers`, a list of host:port"),
                );
            }
            for (i, server) in servers.iter().enumerate() {
                if !is_host_port(&server.value) {
                    self.err(
                        server,
                        format!(
                            "{at}.servers[{i}]: invalid server {:?}: expected host:port",
                            server.value
                        ),
                    );
                }
            }
            let balance = self.one_of(
                &format!("{at}.balance"),
                balance.as_ref(),
                &[
                    ("round_robin", Balance::RoundRobin),
                    ("random", Balance::Random),
                    ("consistent_hash", Balance::ConsistentHash),
                    ("least_connections", Balance::LeastConnections),
                ],
                Balance::RoundRobin,
            );
            let health_check = health_check.map(|hc| {
                let RawHealthCheck { path, interval } = hc.value;
                HealthCheckConfig {
                    path: self.http_path(
                        &format!("{at}.health_check.path"),
                        path.as_ref(),
                        default::HEALTH_CHECK_PATH,
                    ),
                    interval: self.positive_duration(
                        &format!("{at}.health_check.interval"),
                        interval.as_ref(),
                        default::HEALTH_CHECK_INTERVAL,
                    ),
                }
            });
            out.push(UpstreamConfig {
                name,
                servers: servers.into_iter().map(|s| s.value).collect(),
                balance,
                health_check,
            });
        }
        out
    }

    fn upstream_ref(&mut self, key: &str, name: &Spanned<String>, upstreams: &[UpstreamConfig]) {
        if !upstreams.iter().any(|u| u.name == name.value) {
            self.err(
                name,
                format!("{key}: no upstream named {:?} in `upstreams`", name.value),
            );
        }
    }

    fn sources(
        &mut self,
        raw: Vec<Spanned<RawSource>>,
        upstreams: &[UpstreamConfig],
    ) -> Vec<SourceConfig> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        for (i, entry) in raw.into_iter().enumerate() {
            let at = format!("sources[{i}]");
            let entry_pos = Pos::of(entry.referenced);
            let RawSource {
                name,
                url,
                upstream,
                path,
                channel,
                channel_from_event_type,
                channel_prefix,
                mode,
                linger,
                stall_timeout,
                headers,
            } = entry.value;
            let Some(name) = self.entry_name(&at, entry_pos, i, name, &mut names, |name, first| {
                format!("{name:?} is also sources[{first}]")
            }) else {
                continue;
            };
            let target = match (url, upstream, path) {
                (Some(url), None, None) => {
                    if !is_http_url(&url.value) {
                        self.err(
                            &url,
                            format!(
                                "{at}.url: expected an http:// or https:// URL, got {:?}",
                                url.value
                            ),
                        );
                    }
                    SourceTarget::Url(url.value)
                }
                (None, Some(upstream), path) => {
                    self.upstream_ref(&format!("{at}.upstream"), &upstream, upstreams);
                    if path.is_none() {
                        self.err(&upstream, format!("{at}: `upstream` needs a `path`"));
                    }
                    let path = self.http_path(&format!("{at}.path"), path.as_ref(), "/");
                    SourceTarget::Upstream {
                        upstream: upstream.value,
                        path,
                    }
                }
                (Some(url), Some(_), _) => {
                    self.err(
                        &url,
                        format!("{at}: set either `url` or `upstream`, not both"),
                    );
                    continue;
                }
                (Some(_), None, Some(path)) => {
                    self.err(&path, format!("{at}.path: only used with `upstream`"));
                    continue;
                }
                (None, None, _) => {
                    self.at(
                        entry_pos,
                        format!("{at}: needs `url`, or `upstream` and `path`"),
                    );
                    continue;
                }
            };
            let from_event_type = channel_from_event_type.as_ref().is_some_and(|b| b.value);
            let channel = match (channel, from_event_type) {
                (Some(channel), false) => {
                    if let Some(prefix) = &channel_prefix {
                        self.err(
                            prefix,
                            format!(
                                "{at}.channel_prefix: only used with `channel_from_event_type`"
                            ),
                        );
                    }
                    if !is_valid_channel(&channel.value) {
                        self.err(
                            &channel,
                            format!(
                                "{at}.channel: invalid channel name {:?}: expected \
                                 [A-Za-z0-9._:/-], 1 to 128 characters",
                                channel.value
                            ),
                        );
                    }
                    SourceChannel::Fixed(channel.value)
                }
                (None, true) => {
                    let prefix = channel_prefix.map(|p| p.value).unwrap_or_default();
                    if !prefix.is_empty() && !is_valid_channel(&prefix) {
                        self.at(
                            entry_pos,
                            format!(
                                "{at}.channel_prefix: {prefix:?} has characters a channel name \
                                 cannot have ([A-Za-z0-9._:/-])"
                            ),
                        );
                    }
                    SourceChannel::FromEventType { prefix }
                }
                (Some(channel), true) => {
                    self.err(
                        &channel,
                        format!(
                            "{at}: set either `channel` or `channel_from_event_type: true`, \
                             not both"
                        ),
                    );
                    continue;
                }
                (None, false) => {
                    self.at(
                        entry_pos,
                        format!("{at}: needs `channel`, or `channel_from_event_type: true`"),
                    );
                    continue;
                }
            };
            let mode = self.one_of(
                &format!("{at}.mode"),
                mode.as_ref(),
                &[
                    ("always", SourceMode::Always),
                    ("on_demand", SourceMode::OnDemand),
                ],
                SourceMode::Always,
            );
            if let (SourceMode::Always, Some(linger)) = (mode, &linger) {
                self.err(
                    linger,
                    format!("{at}.linger: only used with `mode: on_demand`"),
                );
            }
            let linger = self.duration(&format!("{at}.linger"), linger.as_ref(), default::LINGER);
            let stall_timeout = self.positive_duration(
                &format!("{at}.stall_timeout"),
                stall_timeout.as_ref(),
                default::STALL_TIMEOUT,
            );
            let mut checked_headers = Vec::new();
            for (header, value) in headers.unwrap_or_default() {
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    self.err(
                        &value,
                        format!("{at}.headers: invalid header name {header:?}"),
                    );
                } else if http::HeaderValue::from_str(&value.value).is_err() {
                    // The value may be a credential: named by its header only.
                    self.err(
                        &value,
                        format!("{at}.headers.{header}: invalid header value"),
                    );
                }
                checked_headers.push((header, value.value));
            }
            out.push(SourceConfig {
                name,
                target,
                channel,
                mode,
                linger,
                stall_timeout,
                headers: checked_headers,
            });
        }
        out
    }

    fn routes(
        &mut self,
        raw: Vec<Spanned<RawRoute>>,
        upstreams: &[UpstreamConfig],
    ) -> Vec<RouteConfig> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, entry) in raw.into_iter().enumerate() {
            let at = format!("routes[{i}]");
            let RawRoute {
                path_prefix,
                host,
                upstream,
                strip_prefix,
            } = entry.value;
            let (Some(path_prefix), Some(upstream)) = (path_prefix, upstream) else {
                self.at(
                    Pos::of(entry.referenced),
                    format!("{at}: needs `path_prefix` and `upstream`"),
                );
                continue;
            };
            let path_prefix = self.http_path(&format!("{at}.path_prefix"), Some(&path_prefix), "/");
            self.upstream_ref(&format!("{at}.upstream"), &upstream, upstreams);
            let host = host.map(|host| {
                if !is_host_name(&host.value) {
                    self.err(
                        &host,
                        format!(
                            "{at}.host: invalid host {:?}: expected a host name without port",
                            host.value
                        ),
                    );
                }
                host.value
            });
            out.push(RouteConfig {
                path_prefix,
                host,
                upstream: upstream.value,
                strip_prefix: strip_prefix.unwrap_or(false),
            });
        }
        out
    }

    fn auth(&mut self, raw: RawAuth) -> AuthConfig {
        let RawAuth {
            jwt,
            cookie_name,
            api_keys,
            ticket_ttl,
        } = raw;
        let ticket_ttl_raw = ticket_ttl.as_ref();
        let cookie_name = match cookie_name {
            Some(name) if is_http_token(&name.value) => name.value,
            Some(name) => {
                self.err(
                    &name,
                    format!("auth.cookie_name: invalid cookie name {:?}", name.value),
                );
                default::COOKIE_NAME.to_owned()
            }
            None => default::COOKIE_NAME.to_owned(),
        };
        let ticket_ttl = self.bounded_duration(
            "auth.ticket_ttl",
            ticket_ttl_raw,
            default::TICKET_TTL,
            (default::MAX_TICKET_TTL, "5m"),
        );
        let ticket_ttl = match ticket_ttl_raw {
            Some(raw) if ticket_ttl.is_zero() => {
                self.err(raw, "auth.ticket_ttl: must be more than 0s");
                default::TICKET_TTL
            }
            _ => ticket_ttl,
        };
        AuthConfig {
            api_keys: self.api_keys(api_keys.unwrap_or_default()),
            cookie_name,
            jwt: jwt.and_then(|jwt| self.jwt(jwt)),
            ticket_ttl,
        }
    }

    fn jwt(&mut self, raw: Spanned<RawJwt>) -> Option<JwtConfig> {
        let at = Pos::of(raw.referenced);
        let RawJwt {
            algorithms,
            secret_env,
            secret_file,
            public_key_file,
            leeway,
            audience,
            issuer,
        } = raw.value;
        let leeway = self.bounded_duration(
            "auth.jwt.leeway",
            leeway.as_ref(),
            default::JWT_LEEWAY,
            (default::MAX_JWT_LEEWAY, "5m"),
        );
        let audience = self.claim_value("auth.jwt.audience", audience);
        let issuer = self.claim_value("auth.jwt.issuer", issuer);
        // The key is read now, so that `--check` and startup report an unreadable or unusable
        // key at its line instead of every token failing later.
        let (key, material, public_kind) = match (secret_env, secret_file, public_key_file) {
            (Some(env), None, None) => {
                let key = "auth.jwt.secret_env";
                let secret = self
                    .secret_from_env(key, &env)
                    .and_then(|s| self.hmac_secret(key, &env, s));
                (JwtKeySource::SecretEnv(env.value), secret, None)
            }
            (None, Some(file), None) => {
                let key = "auth.jwt.secret_file";
                let secret = self
                    .secret_from_file(key, &file)
                    .and_then(|s| self.hmac_secret(key, &file, s));
                (
                    JwtKeySource::SecretFile(PathBuf::from(file.value)),
                    secret,
                    None,
                )
            }
            (None, None, Some(file)) => {
                let (pem, kind) = match self.public_key(&file) {
                    Some((pem, kind)) => (Some(JwtKeyMaterial::PublicKeyPem(pem)), Some(kind)),
                    None => (None, None),
                };
                (
                    JwtKeySource::PublicKeyFile(PathBuf::from(file.value)),
                    pem,
                    kind,
                )
            }
            _ => {
                self.at(
                    at,
                    "auth.jwt: set exactly one of `secret_env`, `secret_file` (HS256) or \
                     `public_key_file` (RS256/ES256)",
                );
                return None;
            }
        };
        let hmac = !matches!(key, JwtKeySource::PublicKeyFile(_));
        let algorithms = match algorithms {
            None if hmac => vec![JwtAlgorithm::Hs256],
            None => {
                self.at(
                    at,
                    "auth.jwt: `public_key_file` needs `algorithms: [RS256]` or `[ES256]`",
                );
                return None;
            }
            Some(list) if list.is_empty() => {
                self.at(at, "auth.jwt.algorithms: must list at least one algorithm");
                return None;
            }
            Some(list) => {
                let mut algorithms = Vec::with_capacity(list.len());
                for (i, name) in list.iter().enumerate() {
                    let key = format!("auth.jwt.algorithms[{i}]");
                    let Some(alg) = self.one_of_required(
                        &key,
                        name,
                        &[
                            ("HS256", JwtAlgorithm::Hs256),
                            ("RS256", JwtAlgorithm::Rs256),
                            ("ES256", JwtAlgorithm::Es256),
                        ],
                    ) else {
                        continue;
                    };
                    if (alg == JwtAlgorithm::Hs256) != hmac {
                        let needs = if hmac {
                            "`secret_env` or `secret_file` only go with HS256"
                        } else {
                            "`public_key_file` only goes with RS256 or ES256"
                        };
                        self.err(name, format!("{key}: {needs}"));
                    } else if let Some(kind) = public_kind {
                        // One key verifies one family: an RSA key never checks ES256, and the
                        // reverse, so listing the other one could only ever reject.
                        if kind.algorithm() != alg {
                            self.err(
                                name,
                                format!(
                                    "{key}: {} does not match the key in `public_key_file`, \
                                     which is {}",
                                    name.value,
                                    kind.describe()
                                ),
                            );
                        }
                    }
                    algorithms.push(alg);
                }
                algorithms
            }
        };
        Some(JwtConfig {
            algorithms,
            key,
            key_material: material?,
            leeway,
            audience,
            issuer,
        })
    }

    /// An HS256 secret must be at least as long as the hash (RFC 7518 section 3.2): a short one
    /// can be brute-forced from any token signed with it.
    fn hmac_secret<T>(
        &mut self,
        key: &str,
        at: &Spanned<T>,
        secret: String,
    ) -> Option<JwtKeyMaterial> {
        if secret.len() < MIN_HMAC_SECRET_BYTES {
            self.err(
                at,
                format!(
                    "{key}: the HS256 secret must be at least {MIN_HMAC_SECRET_BYTES} bytes \
                     (it has {})",
                    secret.len()
                ),
            );
            return None;
        }
        Some(JwtKeyMaterial::Secret(secret.into_bytes()))
    }

    /// Reads and checks the PEM public key of `auth.jwt.public_key_file`.
    fn public_key(&mut self, path: &Spanned<String>) -> Option<(Vec<u8>, PublicKeyKind)> {
        let key = "auth.jwt.public_key_file";
        let pem = match std::fs::read(&path.value) {
            Ok(pem) => pem,
            Err(err) => {
                self.err(
                    path,
                    format!("{key}: cannot read file {:?}: {err}", path.value),
                );
                return None;
            }
        };
        match crate::auth::jwt::check_public_key(&pem) {
            Ok(kind) => Some((pem, kind)),
            Err(why) => {
                self.err(path, format!("{key}: {:?}: {why}", path.value));
                None
            }
        }
    }

    /// A non-empty string compared with a token claim (`aud`, `iss`).
    fn claim_value(&mut self, key: &str, value: Option<Spanned<String>>) -> Option<String> {
        let value = value?;
        if value.value.trim().is_empty() {
            self.err(&value, format!("{key}: must not be empty"));
            return None;
        }
        Some(value.value)
    }

    fn api_keys(&mut self, raw: Vec<Spanned<RawApiKey>>) -> Vec<ApiKey> {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut out: Vec<ApiKey> = Vec::with_capacity(raw.len());
        for (i, entry) in raw.into_iter().enumerate() {
            let at = format!("auth.api_keys[{i}]");
            let entry_pos = Pos::of(entry.referenced);
            let RawApiKey {
                name,
                key_env,
                key_file,
                publish,
                admin,
            } = entry.value;
            let name = self
                .entry_name(&at, entry_pos, i, name, &mut names, |name, first| {
                    format!("duplicate API key name {name:?} (also auth.api_keys[{first}])")
                })
                .unwrap_or_default();
            let key = match (key_env, key_file) {
                (Some(env), None) => self.secret_from_env(&format!("{at}.key_env"), &env),
                (None, Some(file)) => self.secret_from_file(&format!("{at}.key_file"), &file),
                (Some(env), Some(_)) => {
                    self.err(&env, format!("{at}: set `key_env` or `key_file`, not both"));
                    None
                }
                (None, None) => {
                    self.at(entry_pos, format!("{at}: needs `key_env` or `key_file`"));
                    None
                }
            };
            let publish = publish
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(|(j, p)| self.pattern(&format!("{at}.publish[{j}]"), p))
                .collect();
            let Some(key) = key else { continue };
            if let Some(other) = out.iter().find(|k| k.key == key) {
                // Two names for one secret would make the caller's identity ambiguous.
                self.at(
                    entry_pos,
                    format!(
                        "{at}: has the same key as API key {:?}; give each its own",
                        other.name
                    ),
                );
            }
            out.push(ApiKey {
                name,
                key,
                publish,
                admin: admin.unwrap_or(false),
            });
        }
        out
    }

    /// The secret in environment variable `var`. Messages name the variable, never its value.
    fn secret_from_env(&mut self, key: &str, var: &Spanned<String>) -> Option<String> {
        if !is_env_name(&var.value) {
            self.err(
                var,
                format!("{key}: invalid environment variable name {:?}", var.value),
            );
            return None;
        }
        match (self.env)(&var.value) {
            None => {
                self.err(
                    var,
                    format!("{key}: environment variable {} is not set", var.value),
                );
                None
            }
            Some(value) => match value.into_string() {
                Ok(secret) if !secret.trim().is_empty() => Some(secret),
                Ok(_) => {
                    self.err(
                        var,
                        format!("{key}: environment variable {} is empty", var.value),
                    );
                    None
                }
                Err(_) => {
                    self.err(
                        var,
                        format!(
                            "{key}: environment variable {} is not valid UTF-8",
                            var.value
                        ),
                    );
                    None
                }
            },
        }
    }

    /// The secret in file `path`, without surrounding whitespace (editors add a final newline).
    fn secret_from_file(&mut self, key: &str, path: &Spanned<String>) -> Option<String> {
        match std::fs::read_to_string(&path.value) {
            Ok(content) if !content.trim().is_empty() => Some(content.trim().to_owned()),
            Ok(_) => {
                self.err(path, format!("{key}: file {:?} is empty", path.value));
                None
            }
            Err(err) => {
                // io::Error describes the failure, never the content.
                self.err(
                    path,
                    format!("{key}: cannot read file {:?}: {err}", path.value),
                );
                None
            }
        }
    }

    fn cors(&mut self, raw: RawCors) -> CorsConfig {
        let RawCors {
            allowed_origins,
            allow_credentials,
        } = raw;
        let allow_credentials = allow_credentials.is_some_and(|b| b.value);
        let mut cors = CorsConfig {
            allowed_origins: Vec::new(),
            allow_any_origin: false,
            allow_credentials,
        };
        for (i, origin) in allowed_origins.unwrap_or_default().into_iter().enumerate() {
            let key = format!("cors.allowed_origins[{i}]");
            if origin.value == "*" {
                if allow_credentials {
                    self.err(
                        &origin,
                        format!(
                            "{key}: \"*\" cannot be used with `allow_credentials: true` \
                             (browsers refuse it); list the origins instead"
                        ),
                    );
                }
                cors.allow_any_origin = true;
                continue;
            }
            if let Err(why) = check_origin(&origin.value) {
                self.err(
                    &origin,
                    format!("{key}: invalid origin {:?}: {why}", origin.value),
                );
            }
            cors.allowed_origins.push(origin.value);
        }
        cors
    }

    fn limits(&mut self, raw: RawLimits) -> LimitsConfig {
        let RawLimits {
            max_connections,
            max_connections_per_ip,
            max_connections_per_user,
            connect_rate_per_ip,
            publish_rate,
            ticket_rate,
            max_event_bytes,
            max_channels_per_connection,
            header_read_timeout,
        } = raw;
        LimitsConfig {
            max_connections: self.count(
                "limits.max_connections",
                max_connections.as_ref(),
                1,
                default::MAX_CONNECTIONS,
            ),
            max_connections_per_ip: max_connections_per_ip
                .map(|v| self.count("limits.max_connections_per_ip", Some(&v), 1, 1)),
            max_connections_per_user: max_connections_per_user
                .map(|v| self.count("limits.max_connections_per_user", Some(&v), 1, 1)),
            connect_rate_per_ip: connect_rate_per_ip
                .and_then(|r| self.rate("limits.connect_rate_per_ip", r)),
            publish_rate: publish_rate.and_then(|r| self.rate("limits.publish_rate", r)),
            ticket_rate: ticket_rate
                .and_then(|r| self.rate("limits.ticket_rate", r))
                .unwrap_or(default::TICKET_RATE),
            max_event_bytes: self.count(
                "limits.max_event_bytes",
                max_event_bytes.as_ref(),
                1,
                default::MAX_EVENT_BYTES,
            ),
            max_channels_per_connection: self.count(
                "limits.max_channels_per_connection",
                max_channels_per_connection.as_ref(),
                1,
                default::MAX_CHANNELS_PER_CONNECTION,
            ),
            header_read_timeout: self.positive_duration(
                "limits.header_read_timeout",
                header_read_timeout.as_ref(),
                default::HEADER_READ_TIMEOUT,
            ),
        }
    }

    /// A token bucket; `burst` defaults to `per_second`.
    fn rate(&mut self, key: &str, raw: Spanned<RawRate>) -> Option<RateLimit> {
        let RawRate { per_second, burst } = raw.value;
        let Some(per_second) = per_second else {
            self.at(
                Pos::of(raw.referenced),
                format!("{key}: needs `per_second`"),
            );
            return None;
        };
        let per_second = self.small_count(&format!("{key}.per_second"), &per_second)?;
        let burst = match burst {
            Some(burst) => self.small_count(&format!("{key}.burst"), &burst)?,
            None => per_second,
        };
        Some(RateLimit { per_second, burst })
    }

    fn small_count(&mut self, key: &str, value: &Spanned<i64>) -> Option<u32> {
        match u32::try_from(value.value) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                self.err(
                    value,
                    format!("{key}: expected 1 to {}, got {}", u32::MAX, value.value),
                );
                None
            }
        }
    }

    fn metrics(&mut self, raw: RawMetrics, sse_path: &str) -> MetricsConfig {
        let RawMetrics { path } = raw;
        let checked = self.http_path("metrics.path", path.as_ref(), default::METRICS_PATH);
        if checked == sse_path {
            if let Some(path) = &path {
                self.err(path, "metrics.path: is also sse.path");
            }
        }
        MetricsConfig { path: checked }
    }

    fn shutdown(&mut self, raw: RawShutdown) -> ShutdownConfig {
        let RawShutdown { grace_period } = raw;
        ShutdownConfig {
            grace_period: self.duration(
                "shutdown.grace_period",
                grace_period.as_ref(),
                default::GRACE_PERIOD,
            ),
        }
    }

    // Value helpers: each reports what is wrong and yields the default instead.

    fn duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        match parse_duration(&value.value) {
            Ok(d) => d,
            Err(why) => {
                self.err(
                    value,
                    format!("{key}: invalid duration {:?}: {why}", value.value),
                );
                default
            }
        }
    }

    /// A duration that must not be zero (an interval or a timeout that has to be able to pass).
    fn positive_duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(key, value, default);
        match value {
            Some(value) if d.is_zero() => {
                self.err(value, format!("{key}: must be more than 0s"));
                default
            }
            _ => d,
        }
    }

    /// A duration of at most `max` (given with its text for the message): a larger value would
    /// defeat what the setting is for.
    fn bounded_duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: Duration,
        (max, max_text): (Duration, &str),
    ) -> Duration {
        let d = self.duration(key, value, default);
        match value {
            Some(value) if d > max => {
                self.err(value, format!("{key}: must be at most {max_text}"));
                default
            }
            _ => d,
        }
    }

    /// A duration where `0s` means "none".
    fn optional_duration(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        default: Option<Duration>,
    ) -> Option<Duration> {
        let d = self.duration(key, value, default.unwrap_or(Duration::ZERO));
        (!d.is_zero()).then_some(d)
    }

    /// A size or count of at least `min` (0 or 1).
    fn count(
        &mut self,
        key: &str,
        value: Option<&Spanned<i64>>,
        min: i64,
        default: usize,
    ) -> usize {
        let Some(value) = value else { return default };
        let n = value.value;
        let problem = if n < 0 {
            format!("{key}: must not be negative, got {n}")
        } else if n < min {
            format!("{key}: must be at least {min}, got {n}")
        } else {
            match usize::try_from(n) {
                Ok(n) => return n,
                Err(_) => format!("{key}: {n} is too large for this platform"),
            }
        };
        self.err(value, problem);
        default
    }

    /// One of the `options` names; `default` when absent.
    fn one_of<T: Copy>(
        &mut self,
        key: &str,
        value: Option<&Spanned<String>>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        value
            .and_then(|v| self.one_of_required(key, v, options))
            .unwrap_or(default)
    }

    fn one_of_required<T: Copy>(
        &mut self,
        key: &str,
        value: &Spanned<String>,
        options: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, t)) = options.iter().find(|(name, _)| *name == value.value) {
            return Some(*t);
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        self.err(
            value,
            format!(
                "{key}: unknown value {:?}: expected one of {}",
                value.value,
                names.join(", ")
            ),
        );
        None
    }

    /// An HTTP path (starts with `/`); `default` when absent.
    fn http_path(&mut self, key: &str, value: Option<&Spanned<String>>, default: &str) -> String {
        let Some(value) = value else {
            return default.to_owned();
        };
        let valid = value.value.starts_with('/')
            && !value
                .value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
        if !valid {
            self.err(
                value,
                format!(
                    "{key}: invalid path {:?}: expected an absolute path like /events",
                    value.value
                ),
            );
            return default.to_owned();
        }
        value.value.clone()
    }

    /// A channel pattern: a channel name, a prefix ending in `*`, or `*` alone.
    fn pattern(&mut self, key: &str, value: &Spanned<String>) -> Option<ChannelPattern> {
        let text = value.value.as_str();
        let pattern = ChannelPattern::parse(text);
        if pattern.is_none() {
            self.err(
                value,
                format!(
                    "{key}: invalid channel pattern {text:?}: expected a channel name \
                     ([A-Za-z0-9._:/-], 1 to 128 characters), optionally ending in *, or * alone"
                ),
            );
        }
        pattern
    }
}

/// `15s`, `500ms`, `10m`, `1h`, `2d`: an integer and a unit.
fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str = "expected an integer and a unit (ms, s, m, h or d), like \"15s\"";
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if number.is_empty() {
        return Err(HINT.to_owned());
    }
    let millis_per_unit: u64 = match unit.trim_start() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("missing unit; {HINT}")),
        _ => return Err(HINT.to_owned()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .map(Duration::from_millis)
        .ok_or_else(|| "too large".to_owned())
}

/// `ip:port` (IPv6 in brackets); `localhost:port` means 127.0.0.1.
fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    let port = text.strip_prefix("localhost:")?.parse::<u16>().ok()?;
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// `host:port` where host is an IP address or a DNS name and port is not 0.
fn is_host_port(text: &str) -> bool {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return addr.port() != 0;
    }
    match text.rsplit_once(':') {
        Some((host, port)) => is_host_name(host) && port.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}

/// A DNS name or IPv4 address (letters, digits, `-`, `.`); no port.
fn is_host_name(text: &str) -> bool {
    (1..=253).contains(&text.len())
        && !text.starts_with(['-', '.'])
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// An absolute `http://` or `https://` URL with a host.
/// An absolute `http://` or `https://` URL with a host, as a request can be made to it.
fn is_http_url(text: &str) -> bool {
    let Ok(uri) = text.parse::<http::Uri>() else {
        return false;
    };
    matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some_and(|h| !h.is_empty())
}

/// An origin as browsers send it: `scheme://host[:port]`, lowercase, no path.
fn check_origin(text: &str) -> Result<(), &'static str> {
    let Some((scheme, authority)) = text.split_once("://") else {
        return Err("expected scheme://host[:port], like http://localhost:5173");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        });
    if !scheme_ok {
        return Err("the scheme must be lowercase letters, like http or https");
    }
    if authority.contains(['/', '?', '#']) {
        return Err("an origin has no path (not even a trailing /)");
    }
    if authority.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("browsers send origins in lowercase");
    }
    let host = match authority.rsplit_once(':') {
        // An IPv6 literal's last colon is inside the brackets.
        Some((host, port)) if !port.ends_with(']') => {
            if port.parse::<u16>().is_err() {
                return Err("the port must be a number from 0 to 65535");
            }
            host
        }
        _ => authority,
    };
    let host_ok = if let Some(ip6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        ip6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        is_host_name(host)
    };
    if host_ok {
        Ok(())
    } else {
        Err("expected scheme://host[:port], like http://localhost:5173")
    }
}

/// An HTTP token (RFC 9110), which is what a cookie name must be.
fn is_http_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A name `std::env::var_os` accepts: not empty, no `=` and no NUL.
fn is_env_name(text: &str) -> bool {
    !text.is_empty() && !text.contains(['=', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment every config here sees: a fixed map, never the process environment,
    /// which tests running in parallel must not set.
    fn test_env(name: &str) -> Option<OsString> {
        let value = match name {
            "SSE_GATEWAY_DEV_KEY" => "unit-test-dev-key",
            "SSE_GATEWAY_JWT_SECRET" | "SSE_GATEWAY_UNIT_JWT" => UNIT_JWT_SECRET,
            "SSE_GATEWAY_UNIT_KEY_A" => "env-secret-value",
            "SSE_GATEWAY_UNIT_KEY_EMPTY" => "",
            "SSE_GATEWAY_UNIT_SHORT_JWT" => "too-short",
            _ => return None,
        };
        Some(value.into())
    }

    fn load(text: &str) -> Config {
        load_str_with_env(text, None, &test_env).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The messages, each prefixed with its `line:col`.
    /// Each problem starts with its expected text, in order, and there are no others.
    fn assert_starts(found: &[String], expected: &[&str]) {
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (got, start) in found.iter().zip(expected) {
            assert!(
                got.starts_with(start),
                "{got:?} should start with {start:?}"
            );
        }
    }

    fn problems(text: &str) -> Vec<String> {
        match load_str_with_env(text, None, &test_env) {
            Ok(config) => panic!("expected errors, got {config:?}"),
            Err(errors) => errors
                .errors
                .into_iter()
                .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
                .collect(),
        }
    }

    /// Asserts exactly one problem, starting with `start`.
    fn one_problem(text: &str, start: &str) {
        let found = problems(text);
        assert!(
            found.len() == 1 && found[0].starts_with(start),
            "expected one problem starting with {start:?}, got {found:#?}"
        );
    }

    /// The contract's reference configuration, verbatim.
    const REFERENCE: &str = r#"
listen: 0.0.0.0:8080
static_dir: frontend-react/dist
sse:
  path: /events
  retry: 3s                      # sent as `retry:` on connect
  heartbeat_interval: 15s
  heartbeat: comment             # comment | event
  client_queue: 1024             # events buffered per client before it counts as slow
  max_connection_lifetime: 1h    # jittered by up to 10%
  idle_timeout: 0s               # 0 = none
  padding: 0                     # bytes of initial comment padding for buffering proxies
history:                         # default for every channel
  max_events: 1000
  max_age: 10m
channels:                        # first matching entry wins; a name ending in * is a prefix
  - name: notifications
    subscribe: public            # public | authenticated | claims
    publish: claims
  - name: "user.*"
    subscribe: claims
    history: {max_events: 100, max_age: 1h}
broker:
  kind: memory                   # memory | redis
  # url: redis://127.0.0.1:6379
sources:
  - name: notifications
    url: http://127.0.0.1:9001/streams/notifications
    channel: notifications
    mode: always                 # always | on_demand
  - name: metrics
    url: http://127.0.0.1:9001/streams/metrics
    channel: metrics
routes:
  - path_prefix: /api/
    upstream: backend
upstreams:
  backend:
    servers: [127.0.0.1:9001]
    balance: round_robin         # round_robin | random | consistent_hash | least_connections
    health_check: {path: /healthz, interval: 5s}
auth:
  jwt:
    algorithms: [HS256]
    secret_env: SSE_GATEWAY_JWT_SECRET   # or secret_file, or public_key_file for RS256/ES256
  cookie_name: sse_token
  api_keys:
    - name: dev
      key_env: SSE_GATEWAY_DEV_KEY       # or key_file
      publish: ["*"]
      admin: true
cors:
  allowed_origins: [http://localhost:5173, http://localhost:8080]
  allow_credentials: true
limits:
  max_connections: 19000
  max_connections_per_ip: 1000
  max_connections_per_user: 10
  connect_rate_per_ip: {per_second: 50, burst: 100}
  publish_rate: {per_second: 1000, burst: 2000}
  max_event_bytes: 65536
  max_channels_per_connection: 32
  header_read_timeout: 10s
metrics:
  path: /metrics
shutdown:
  grace_period: 10s
"#;

    #[test]
    fn the_reference_configuration_loads_completely() {
        let config = load(REFERENCE);
        assert_eq!(config.history_for("user.7").max_events, 100);
        assert_eq!(
            config.history_for("user.7").max_age,
            Duration::from_secs(3600)
        );
        assert_eq!(config.history_for("notifications").max_events, 1000);
        assert_eq!(config.sources.len(), 2);
        assert_eq!(
            config.sources[0],
            SourceConfig {
                name: "notifications".into(),
                target: SourceTarget::Url("http://127.0.0.1:9001/streams/notifications".into()),
                channel: SourceChannel::Fixed("notifications".into()),
                mode: SourceMode::Always,
                linger: Duration::from_secs(30),
                stall_timeout: Duration::from_secs(45),
                headers: vec![],
            }
        );
        assert_eq!(
            config.routes,
            [RouteConfig {
                path_prefix: "/api/".into(),
                host: None,
                upstream: "backend".into(),
                strip_prefix: false,
            }]
        );
        assert_eq!(
            config.upstreams,
            [UpstreamConfig {
                name: "backend".into(),
                servers: vec!["127.0.0.1:9001".into()],
                balance: Balance::RoundRobin,
                health_check: Some(HealthCheckConfig {
                    path: "/healthz".into(),
                    interval: Duration::from_secs(5),
                }),
            }]
        );
        assert_eq!(
            config.auth.jwt,
            Some(JwtConfig {
                algorithms: vec![JwtAlgorithm::Hs256],
                key: JwtKeySource::SecretEnv("SSE_GATEWAY_JWT_SECRET".into()),
                key_material: JwtKeyMaterial::Secret(UNIT_JWT_SECRET.as_bytes().to_vec()),
                leeway: Duration::from_secs(30),
                audience: None,
                issuer: None,
            })
        );
        assert_eq!(config.auth.ticket_ttl, Duration::from_secs(30));
        let limits = &config.limits;
        assert_eq!(limits.max_connections_per_ip, Some(1000));
        assert_eq!(limits.max_connections_per_user, Some(10));
        assert_eq!(
            limits.connect_rate_per_ip,
            Some(RateLimit {
                per_second: 50,
                burst: 100
            })
        );
        assert_eq!(
            limits.publish_rate,
            Some(RateLimit {
                per_second: 1000,
                burst: 2000
            })
        );
    }

    #[test]
    fn durations() {
        let ok = [
            ("15s", 15_000),
            ("500ms", 500),
            ("10m", 600_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("0s", 0),
            (" 5 s ", 5_000),
        ];
        for (text, millis) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for text in [
            "15",
            "s",
            "",
            "1.5s",
            "-1s",
            "15 seconds",
            "1w",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} parsed");
        }
        assert!(parse_duration("15")
            .unwrap_err()
            .starts_with("missing unit"));
    }

    #[test]
    fn zero_lifetime_and_idle_timeout_mean_none() {
        let config = load("sse: {max_connection_lifetime: 0s, idle_timeout: 30s}");
        assert_eq!(config.sse.max_connection_lifetime, None);
        assert_eq!(config.sse.idle_timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn intervals_and_timeouts_cannot_be_zero() {
        one_problem(
            "sse:\n  heartbeat_interval: 0s\n",
            "2:23: sse.heartbeat_interval: must be more than 0s",
        );
        one_problem(
            "limits: {header_read_timeout: 0ms}",
            "1:31: limits.header_read_timeout: must be more than 0s",
        );
    }

    #[test]
    fn listen_addresses() {
        let ok = [
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("[::]:8080", "[::]:8080"),
            ("localhost:8080", "127.0.0.1:8080"),
        ];
        for (text, addr) in ok {
            assert_eq!(parse_listen(text), addr.parse().ok(), "{text}");
        }
        for text in [
            "localhost",
            "1.2.3.4",
            "example.com:80",
            "0.0.0.0:99999",
            ":8080",
        ] {
            assert_eq!(parse_listen(text), None, "{text:?} parsed");
        }
        one_problem("listen: 8080", "1:9: listen: invalid address \"8080\"");
    }

    #[test]
    fn sizes_and_counts() {
        let found = problems(
            "sse: {client_queue: 0, padding: -1}\nhistory: {max_events: -3}\n\
             limits: {max_event_bytes: 0, max_connections: 0}\n",
        );
        assert_eq!(
            found,
            [
                "1:21: sse.client_queue: must be at least 1, got 0",
                "1:33: sse.padding: must not be negative, got -1",
                "2:23: history.max_events: must not be negative, got -3",
                "3:27: limits.max_event_bytes: must be at least 1, got 0",
                "3:47: limits.max_connections: must be at least 1, got 0",
            ]
        );
        one_problem(
            "sse: {padding: 2000000}",
            "1:16: sse.padding: at most 1048576 bytes",
        );
        assert_eq!(load("history: {max_events: 0}").history.max_events, 0);
    }

    #[test]
    fn channel_patterns() {
        let config =
            load("channels:\n  - name: \"user.*\"\n  - name: \"*\"\n  - name: a.b:c/d-e_f\n");
        let patterns: Vec<_> = config.channels.iter().map(|r| r.pattern.clone()).collect();
        assert_eq!(
            patterns,
            [
                ChannelPattern::Prefix("user.".into()),
                ChannelPattern::Prefix(String::new()),
                ChannelPattern::Exact("a.b:c/d-e_f".into()),
            ]
        );
        for bad in ["\"a*b\"", "\"**\"", "\"\"", "a b", "é"] {
            let text = format!("channels: [{{name: {bad}}}]");
            one_problem(&text, "1:19: channels[0].name: invalid channel pattern");
        }
        let long = "x".repeat(129);
        one_problem(
            &format!("channels: [{{name: {long}}}]"),
            "1:19: channels[0].name: invalid channel pattern",
        );
        one_problem(
            "channels:\n  - {name: a}\n  - {name: a}\n",
            "3:12: channels[1].name: \"a\" is already listed above",
        );
        one_problem(
            "channels:\n  - subscribe: public\n",
            "2:5: channels[0]: missing `name`",
        );
    }

    #[test]
    fn policies_and_heartbeat() {
        let config =
            load("sse: {heartbeat: event}\nchannels:\n  - {name: a, subscribe: authenticated}\n");
        assert_eq!(config.sse.heartbeat, HeartbeatKind::Event);
        let rule = &config.channels[0];
        assert_eq!(
            (rule.subscribe, rule.publish),
            (Policy::Authenticated, Policy::Claims)
        );
        let found = problems("sse: {heartbeat: ping}\nchannels: [{name: a, publish: anyone}]\n");
        assert_eq!(
            found,
            [
                "1:18: sse.heartbeat: unknown value \"ping\": expected one of comment, event",
                "2:31: channels[0].publish: unknown value \"anyone\": expected one of public, \
                 authenticated, claims",
            ]
        );
    }

    #[test]
    fn brokers() {
        let config = load("broker: {kind: redis, url: \"rediss://cache:6380\"}");
        assert_eq!(
            config.broker,
            BrokerConfig::Redis {
                url: "rediss://cache:6380".into()
            }
        );
        one_problem(
            "broker:\n  kind: redis\n",
            "2:3: broker: `kind: redis` needs `url: redis://host:port`",
        );
        one_problem(
            "broker: {kind: redis, url: \"http://x:1\"}",
            "1:28: broker.url: expected redis://host:port",
        );
        let config = load("broker: {kind: redis, url: \"unix:///run/redis.sock\"}");
        assert!(matches!(config.broker, BrokerConfig::Redis { .. }));
        one_problem(
            "broker: {url: \"redis://x:1\"}",
            "1:15: broker.url: only used with `kind: redis`",
        );
        one_problem(
            "broker: {kind: kafka}",
            "1:16: broker.kind: unknown value \"kafka\"",
        );
    }

    #[test]
    fn paths() {
        let found = problems("sse: {path: events}\nmetrics: {path: \"/m etrics\"}\n");
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].starts_with("1:13: sse.path: invalid path \"events\""));
        assert!(found[1].starts_with("2:17: metrics.path: invalid path"));
        one_problem(
            "sse: {path: /x}\nmetrics: {path: /x}\n",
            "2:17: metrics.path: is also sse.path",
        );
    }

    #[test]
    fn static_dir_can_be_turned_off() {
        assert_eq!(load("static_dir: \"\"").static_dir, None);
        assert_eq!(load("static_dir: ui").static_dir, Some(PathBuf::from("ui")));
    }

    #[test]
    fn cors_origins() {
        for ok in [
            "http://localhost:5173",
            "https://example.com",
            "http://[::1]:8080",
            "app://x",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://localhost:5173/",
            "localhost:5173",
            "HTTP://x",
            "http://Example.com",
            "http://x:port",
            "http://",
            "http://a/b",
        ] {
            assert!(check_origin(bad).is_err(), "{bad} accepted");
        }
        let config = load("cors: {allowed_origins: [\"*\"]}");
        assert!(config.cors.allow_any_origin && config.cors.allowed_origins.is_empty());
        one_problem(
            "cors:\n  allowed_origins: [http://a.example/]\n",
            "2:21: cors.allowed_origins[0]: invalid origin \"http://a.example/\": an origin has \
             no path",
        );
    }

    #[test]
    fn api_keys_from_files_and_their_problems() {
        let dir = std::env::temp_dir().join(format!("sse-gateway-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key_file = dir.join("ops.key");
        std::fs::write(&key_file, "file-secret-value\n").unwrap();
        let empty_file = dir.join("empty.key");
        std::fs::write(&empty_file, "\n").unwrap();

        let text = format!(
            "auth:\n  api_keys:\n    - {{name: a, key_env: SSE_GATEWAY_UNIT_KEY_A}}\n    \
             - {{name: ops, key_file: {:?}, publish: [\"ops.*\", news], admin: false}}\n",
            key_file.display()
        );
        let config = load(&text);
        let keys = &config.auth.api_keys;
        assert_eq!(keys[0].key, "env-secret-value");
        assert_eq!(keys[1].key, "file-secret-value");
        assert_eq!(
            keys[1].publish,
            [
                ChannelPattern::Prefix("ops.".into()),
                ChannelPattern::Exact("news".into())
            ]
        );
        assert!(!keys[0].admin && keys[0].publish.is_empty());

        let text = format!(
            "auth:\n  api_keys:\n\
             \x20   - {{name: a, key_env: SSE_GATEWAY_UNIT_KEY_A}}\n\
             \x20   - {{name: a, key_env: SSE_GATEWAY_UNIT_KEY_A}}\n\
             \x20   - {{name: b, key_env: SSE_GATEWAY_UNIT_KEY_EMPTY}}\n\
             \x20   - {{name: c, key_file: {:?}}}\n\
             \x20   - {{name: d, key_file: /nonexistent/key}}\n\
             \x20   - {{name: e, key_env: X, key_file: y}}\n\
             \x20   - {{name: f}}\n\
             \x20   - {{name: g, key_env: \"A=B\"}}\n\
             \x20   - {{name: h, key_file: {:?}, publish: [\"a b\"]}}\n",
            empty_file.display(),
            key_file.display()
        );
        let found = problems(&text);
        let expected_starts = [
            "4:7: auth.api_keys[1]: has the same key as API key \"a\"",
            "4:14: auth.api_keys[1].name: duplicate API key name \"a\" (also auth.api_keys[0])",
            "5:26: auth.api_keys[2].key_env: environment variable SSE_GATEWAY_UNIT_KEY_EMPTY is empty",
            "6:27: auth.api_keys[3].key_file: file",
            "7:27: auth.api_keys[4].key_file: cannot read file \"/nonexistent/key\"",
            "8:26: auth.api_keys[5]: set `key_env` or `key_file`, not both",
            "9:7: auth.api_keys[6]: needs `key_env` or `key_file`",
            "10:26: auth.api_keys[7].key_env: invalid environment variable name \"A=B\"",
            "11:",
        ];
        assert_starts(&found, &expected_starts);
        assert!(found[8].contains("auth.api_keys[8].publish[0]: invalid channel pattern"));
        for message in &found {
            assert!(!message.contains("secret-value"), "secret in {message:?}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    const UNIT_JWT_SECRET: &str = "unit-test-jwt-secret-of-at-least-32-bytes";

    fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn jwt_settings() {
        let rsa = fixture("jwt-rsa.pub.pem");
        let config = load(&format!(
            "auth:\n  jwt: {{algorithms: [RS256], public_key_file: {rsa}, leeway: 5s, \
             audience: sse, issuer: \"https://auth.test\"}}\n  ticket_ttl: 10s\n"
        ));
        let jwt = config.auth.jwt.unwrap();
        assert_eq!(jwt.algorithms, [JwtAlgorithm::Rs256]);
        assert_eq!(jwt.key, JwtKeySource::PublicKeyFile(rsa.clone().into()));
        assert_eq!(
            jwt.key_material,
            JwtKeyMaterial::PublicKeyPem(std::fs::read(&rsa).unwrap())
        );
        assert_eq!(jwt.leeway, Duration::from_secs(5));
        assert_eq!(jwt.audience.as_deref(), Some("sse"));
        assert_eq!(jwt.issuer.as_deref(), Some("https://auth.test"));
        assert_eq!(config.auth.ticket_ttl, Duration::from_secs(10));
        let ec = fixture("jwt-ec.pub.pem");
        let config = load(&format!(
            "auth: {{jwt: {{algorithms: [ES256], public_key_file: {ec}}}}}"
        ));
        assert_eq!(config.auth.jwt.unwrap().algorithms, [JwtAlgorithm::Es256]);

        let dir = std::env::temp_dir().join(format!("sse-gw-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, format!("{UNIT_JWT_SECRET}\n")).unwrap();
        let config = load(&format!(
            "auth: {{jwt: {{secret_file: {}}}, cookie_name: tok}}",
            secret.display()
        ));
        assert_eq!(config.auth.cookie_name, "tok");
        let jwt = config.auth.jwt.unwrap();
        assert_eq!(jwt.algorithms, [JwtAlgorithm::Hs256]);
        assert_eq!(
            jwt.key_material,
            JwtKeyMaterial::Secret(UNIT_JWT_SECRET.as_bytes().to_vec()),
            "trimmed like API key files"
        );
        std::fs::remove_dir_all(&dir).ok();

        one_problem(
            &format!("auth:\n  jwt: {{public_key_file: {rsa}}}\n"),
            "2:8: auth.jwt: `public_key_file` needs `algorithms",
        );
        one_problem(
            "auth:\n  jwt: {secret_env: S, secret_file: f}\n",
            "2:8: auth.jwt: set exactly one of",
        );
        one_problem(
            "auth:\n  jwt: {algorithms: [RS256], secret_env: SSE_GATEWAY_UNIT_JWT}\n",
            "2:22: auth.jwt.algorithms[0]: `secret_env` or `secret_file` only go with HS256",
        );
        one_problem(
            "auth:\n  jwt: {algorithms: [none], secret_env: SSE_GATEWAY_UNIT_JWT}\n",
            "2:22: auth.jwt.algorithms[0]: unknown value \"none\"",
        );
        one_problem(
            "auth: {cookie_name: \"a b\"}",
            "1:21: auth.cookie_name: invalid cookie name",
        );
    }

    #[test]
    fn jwt_keys_that_cannot_be_used_are_errors_at_their_line() {
        one_problem(
            "auth:\n  jwt:\n    secret_env: SSE_GATEWAY_UNIT_UNSET_JWT\n",
            "3:17: auth.jwt.secret_env: environment variable SSE_GATEWAY_UNIT_UNSET_JWT is not set",
        );
        one_problem(
            "auth:\n  jwt:\n    secret_env: SSE_GATEWAY_UNIT_SHORT_JWT\n",
            "3:17: auth.jwt.secret_env: the HS256 secret must be at least 32 bytes (it has 9)",
        );
        one_problem(
            "auth:\n  jwt:\n    secret_file: /nonexistent/jwt\n",
            "3:18: auth.jwt.secret_file: cannot read file \"/nonexistent/jwt\"",
        );
        one_problem(
            "auth:\n  jwt:\n    algorithms: [RS256]\n    public_key_file: /nonexistent/k.pem\n",
            "4:22: auth.jwt.public_key_file: cannot read file \"/nonexistent/k.pem\"",
        );
        for (name, why) in [
            ("jwt-rsa1024.pub.pem", "the RSA key has 1024 bits"),
            ("jwt-ec-p384.pub.pem", "not a P-256 public key"),
            ("jwt-rsa.key.pem", "holds a private key"),
            ("README.md", "not a PEM file"),
        ] {
            let path = fixture(name);
            one_problem(
                &format!("auth:\n  jwt:\n    algorithms: [RS256]\n    public_key_file: {path}\n"),
                &format!("4:22: auth.jwt.public_key_file: {path:?}: {why}"),
            );
        }
        // One key verifies one family: an RSA key with ES256 listed, and the reverse.
        let rsa = fixture("jwt-rsa.pub.pem");
        one_problem(
            &format!("auth:\n  jwt:\n    algorithms: [RS256, ES256]\n    public_key_file: {rsa}\n"),
            "3:25: auth.jwt.algorithms[1]: ES256 does not match the key in `public_key_file`, \
             which is an RSA key (RS256)",
        );
        let ec = fixture("jwt-ec.pub.pem");
        one_problem(
            &format!("auth:\n  jwt:\n    algorithms: [RS256]\n    public_key_file: {ec}\n"),
            "3:18: auth.jwt.algorithms[0]: RS256 does not match the key in `public_key_file`, \
             which is a P-256 key (ES256)",
        );
        let jwt = "auth:\n  jwt:\n    secret_env: SSE_GATEWAY_UNIT_JWT\n";
        one_problem(
            &format!("{jwt}    leeway: 10m\n"),
            "4:13: auth.jwt.leeway: must be at most 5m",
        );
        one_problem(
            &format!("{jwt}    audience: \"\"\n"),
            "4:15: auth.jwt.audience: must not be empty",
        );
        one_problem(
            "auth:\n  ticket_ttl: 0s\n",
            "2:15: auth.ticket_ttl: must be more than 0s",
        );
        one_problem(
            "auth:\n  ticket_ttl: 1h\n",
            "2:15: auth.ticket_ttl: must be at most 5m",
        );
    }

    #[test]
    fn sources_routes_and_upstreams() {
        let text = "\
upstreams:
  api:
    servers: [\"10.0.0.1:80\", \"backend:8080\"]
    balance: least_connections
    health_check: {interval: 2s}
sources:
  - name: feed
    upstream: api
    path: /feed
    channel_from_event_type: true
    channel_prefix: feed.
    mode: on_demand
    linger: 5s
    stall_timeout: 20s
    headers: {Authorization: Bearer abc}
routes:
  - {path_prefix: /api/, host: example.com, upstream: api, strip_prefix: true}
";
        let config = load(text);
        assert_eq!(
            config.sources,
            [SourceConfig {
                name: "feed".into(),
                target: SourceTarget::Upstream {
                    upstream: "api".into(),
                    path: "/feed".into()
                },
                channel: SourceChannel::FromEventType {
                    prefix: "feed.".into()
                },
                mode: SourceMode::OnDemand,
                linger: Duration::from_secs(5),
                stall_timeout: Duration::from_secs(20),
                headers: vec![("Authorization".into(), "Bearer abc".into())],
            }]
        );
        assert_eq!(config.upstreams[0].balance, Balance::LeastConnections);
        assert_eq!(
            config.upstreams[0].health_check,
            Some(HealthCheckConfig {
                path: "/healthz".into(),
                interval: Duration::from_secs(2)
            })
        );
        assert_eq!(config.routes[0].host.as_deref(), Some("example.com"));
        assert!(config.routes[0].strip_prefix);

        let text = "\
upstreams:
  api: {servers: [\"nohost\", \"h:0\"], balance: fastest}
  empty: {}
sources:
  - {name: a, url: \"ftp://x\", channel: a}
  - {name: a, url: \"http://x\", upstream: api, channel: a}
  - {name: b, upstream: nope, path: /x, channel: \"bad channel\"}
  - {name: c, url: \"http://x\"}
  - {name: d, url: \"http://x\", channel: d, headers: {\"bad header\": v, X-Ok: \"\\n\"}}
  - {name: e, url: \"http://x\", channel: e, channel_prefix: p., linger: 5s, stall_timeout: 0s}
routes:
  - {path_prefix: api, upstream: missing}
  - {upstream: api}
";
        let found = problems(text);
        let expected = [
            "2:19: upstreams.api.servers[0]: invalid server \"nohost\"",
            "2:29: upstreams.api.servers[1]: invalid server \"h:0\"",
            "2:46: upstreams.api.balance: unknown value \"fastest\"",
            "3:10: upstreams.empty: needs `servers`",
            "5:20: sources[0].url: expected an http:// or https:// URL",
            "6:12: sources[1].name: \"a\" is also sources[0]",
            "6:20: sources[1]: set either `url` or `upstream`, not both",
            "7:25: sources[2].upstream: no upstream named \"nope\"",
            "7:50: sources[2].channel: invalid channel name \"bad channel\"",
            "8:5: sources[3]: needs `channel`, or `channel_from_event_type: true`",
            "9:68: sources[4].headers: invalid header name \"bad header\"",
            "9:77: sources[4].headers.X-Ok: invalid header value",
            "10:60: sources[5].channel_prefix: only used with `channel_from_event_type`",
            "10:72: sources[5].linger: only used with `mode: on_demand`",
            "10:91: sources[5].stall_timeout: must be more than 0s",
            "12:19: routes[0].path_prefix: invalid path \"api\"",
            "12:34: routes[0].upstream: no upstream named \"missing\"",
            "13:5: routes[1]: needs `path_prefix` and `upstream`",
        ];
        assert_starts(&found, &expected);
    }

    #[test]
    fn limits_rates() {
        let config = load("limits: {publish_rate: {per_second: 5}}");
        assert_eq!(
            config.limits.publish_rate,
            Some(RateLimit {
                per_second: 5,
                burst: 5
            })
        );
        assert_eq!(
            config.limits.ticket_rate,
            RateLimit {
                per_second: 10,
                burst: 20
            },
            "tickets are rate limited unless configured otherwise"
        );
        let config = load("limits: {ticket_rate: {per_second: 2, burst: 7}}");
        assert_eq!(
            config.limits.ticket_rate,
            RateLimit {
                per_second: 2,
                burst: 7
            }
        );
        let found = problems(
            "limits:\n  connect_rate_per_ip: {burst: 3}\n  publish_rate: {per_second: 0}\n  \
             max_connections_per_ip: 0\n  ticket_rate: {per_second: 1, burst: -1}\n",
        );
        assert_eq!(
            found,
            [
                "2:24: limits.connect_rate_per_ip: needs `per_second`",
                "3:30: limits.publish_rate.per_second: expected 1 to 4294967295, got 0",
                "4:27: limits.max_connections_per_ip: must be at least 1, got 0",
                "5:39: limits.ticket_rate.burst: expected 1 to 4294967295, got -1",
            ]
        );
    }

    #[test]
    fn unknown_keys_at_every_depth() {
        let text = "\
bogus: 1
limits:
  publish_rate: {per_second: 1, bursty: 2}
upstreams:
  api:
    servers: [\"a:1\"]
    weight: 3
    health_check:
      path: /h
      timeout: 1s
channels:
  - name: a
  - name: b
    history:
      max_evnets: 3
";
        assert_eq!(
            problems(text),
            [
                "1:1: bogus: unknown key",
                "3:33: limits.publish_rate.bursty: unknown key",
                "7:5: upstreams.api.weight: unknown key",
                "10:7: upstreams.api.health_check.timeout: unknown key",
                "15:7: channels[1].history.max_evnets: unknown key",
            ]
        );
    }

    #[test]
    fn serde_errors_name_their_key() {
        one_problem(
            "sse:\n  retry: [3s]\n",
            "2:10: sse.retry: expected a single value, not a list or a mapping",
        );
        one_problem(
            "cors:\n  allow_credentials: maybe\n",
            "2:22: cors.allow_credentials: expected true or false",
        );
        one_problem("channels: {name: a}", "1:11: channels: expected a list");
        one_problem("sse: 5", "1:6: sse: expected a mapping");
        one_problem(
            "listen: a\nlisten: b\n",
            "2:1: duplicate mapping key: listen",
        );
        one_problem("- 1", "1:1: expected a mapping");
    }

    #[test]
    fn display_is_one_located_line_per_problem() {
        let errors = load_str(
            "sse: {retry: x, client_queue: -1}",
            Some(Path::new("g.yaml")),
        )
        .unwrap_err();
        let shown = errors.to_string();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("g.yaml:1:14: sse.retry: invalid duration \"x\""));
        assert!(lines[1].starts_with("g.yaml:1:31: sse.client_queue: must not be negative"));
        let embedded = load_str("sse: {retry: x}", None).unwrap_err();
        assert!(embedded
            .to_string()
            .starts_with("<embedded gateway.yaml>:1:14: "));
    }
}
