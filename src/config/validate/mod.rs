//! From the file format to the checked [`Config`], reporting every problem at once.
//!
//! This module holds the file as a whole (loading, the problems, [`Checker`] and the top level);
//! each section has a file of its own with its tests beside it: `serving` (`listen`, `sse`,
//! `metrics`, `shutdown`), `tls` (`tls`, `http2_cleartext`), `channels` (`history`,
//! `channels`), `broker`, `sources`, `proxy` (`upstreams`, `routes`), `auth`, `cors`, `limits`;
//! `values` checks what they all use (durations, counts, paths, patterns, addresses).
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
    RawHistory, RawJwt, RawLimits, RawMetrics, RawPassive, RawRate, RawRoute, RawServer,
    RawShutdown, RawSource, RawSse, RawTls, RawUpstream,
};
use super::{
    is_valid_channel, ApiKey, AuthConfig, Balance, BrokerConfig, ChannelPattern, ChannelRule, Cidr,
    Config, CorsConfig, HashKey, HealthCheckConfig, HeartbeatKind, HistoryLimits, JwtAlgorithm,
    JwtConfig, JwtKeyMaterial, JwtKeySource, LimitsConfig, MetricsConfig, PassiveConfig, Policy,
    RateLimit, RouteAuth, RouteConfig, ServerConfig, ShutdownConfig, SourceChannel, SourceConfig,
    SourceMode, SourceTarget, SseConfig, TlsConfig, UpstreamConfig,
};

mod auth;
mod broker;
mod channels;
mod cors;
mod limits;
mod proxy;
mod serving;
mod sources;
mod tls;
mod values;

use values::*;

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
    pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
    /// One success brings a server back; two failures in a row (a check, then its retry at the
    /// next interval) take it out: one lost packet does not.
    pub const HEALTHY_AFTER: usize = 1;
    pub const UNHEALTHY_AFTER: usize = 2;
    pub const PASSIVE_FAILURES: usize = 3;
    pub const EJECT_FOR: Duration = Duration::from_secs(10);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// The contract's default: an upstream that says nothing for a minute is taken for dead.
    pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(60);
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
            trusted_proxies,
            tls,
            http2_cleartext,
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
        let trusted_proxies = self.trusted_proxies(trusted_proxies.unwrap_or_default());
        let tls = tls.and_then(|tls| self.tls(tls, listen));
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
            trusted_proxies,
            tls,
            http2_cleartext: http2_cleartext.is_some_and(|on| on.value),
            source: source.map(Path::to_path_buf),
        }
    }
}

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

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
        let config = load_ok(REFERENCE);
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
                auth: RouteAuth::Public,
                timeout: Some(Duration::from_secs(60)),
                rate_limit: None,
            }]
        );
        assert_eq!(
            config.upstreams,
            [UpstreamConfig {
                name: "backend".into(),
                servers: vec![ServerConfig {
                    addr: "127.0.0.1:9001".into(),
                    weight: 1,
                }],
                balance: Balance::RoundRobin,
                hash_key: HashKey::ClientIp,
                health_check: Some(HealthCheckConfig {
                    path: "/healthz".into(),
                    interval: Duration::from_secs(5),
                    timeout: Duration::from_secs(2),
                    healthy_after: 1,
                    unhealthy_after: 2,
                }),
                passive: None,
                connect_timeout: Duration::from_secs(2),
                tls: false,
                sni: None,
                ca_file: None,
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
      timout: 1s
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
                "10:7: upstreams.api.health_check.timout: unknown key",
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
