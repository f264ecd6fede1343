//! Placeholder loader (replaced by the full validator).
use super::*;
use std::fmt;

#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub col: u64,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{}:{}:{}: {}", e.file, e.line, e.col, e.message)?;
        }
        Ok(())
    }
}
impl std::error::Error for ConfigErrors {}

pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            message: e.to_string(),
        }])
    })?;
    load_str(&text, Some(path))
}

pub fn load_str(_text: &str, source: Option<&Path>) -> Result<Config, ConfigErrors> {
    let history = HistoryLimits { max_events: 1000, max_age: Duration::from_secs(600) };
    let key = std::env::var("SSE_GATEWAY_DEV_KEY").unwrap_or_default();
    let listen = std::env::var("STUB_LISTEN").unwrap_or("127.0.0.1:8080".into());
    Ok(Config {
        listen: listen.parse().map_err(|_| ConfigErrors(vec![]))?,
        static_dir: Some(PathBuf::from("frontend-react/dist")),
        sse: SseConfig {
            path: "/events".into(),
            retry: Duration::from_secs(3),
            heartbeat_interval: Duration::from_secs(15),
            heartbeat: HeartbeatKind::Comment,
            client_queue: 1024,
            max_connection_lifetime: Some(Duration::from_secs(3600)),
            idle_timeout: None,
            padding: 0,
        },
        history,
        channels: vec![ChannelRule {
            pattern: ChannelPattern::Prefix(String::new()),
            subscribe: Policy::Public,
            publish: Policy::Claims,
            history,
        }],
        broker: BrokerConfig::Memory,
        auth: AuthConfig {
            api_keys: if key.is_empty() { vec![] } else {
                vec![ApiKey { name: "dev".into(), key, publish: vec![ChannelPattern::Prefix(String::new())], admin: true }]
            },
            cookie_name: "sse_token".into(),
        },
        cors: CorsConfig::default(),
        limits: LimitsConfig {
            max_connections: 19000,
            max_event_bytes: 65536,
            max_channels_per_connection: 32,
            header_read_timeout: Duration::from_secs(10),
        },
        metrics: MetricsConfig { path: "/metrics".into() },
        shutdown: ShutdownConfig { grace_period: Duration::from_secs(10) },
        source: source.map(Path::to_path_buf),
    })
}
