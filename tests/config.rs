//! The config loader through the library's public API: the shipped file, error reporting with
//! positions, defaults, and robustness against arbitrary input.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use sse_gateway::config::{
    self, BrokerConfig, ChannelPattern, Config, ConfigErrors, HeartbeatKind, HistoryLimits, Policy,
    SourceChannel, SourceMode, SourceTarget,
};

/// The shipped file names this variable for its `dev` API key.
const DEV_KEY_VAR: &str = "SSE_GATEWAY_DEV_KEY";
const DEV_KEY: &str = "test-dev-key-3f1c9a7e";

/// The environment the configs here see: the dev key only. Never the process environment,
/// which tests running in parallel must not set.
fn env(name: &str) -> Option<OsString> {
    (name == DEV_KEY_VAR).then(|| DEV_KEY.into())
}

fn errors(text: &str) -> ConfigErrors {
    match config::load_str_with_env(text, Some(Path::new("test.yaml")), &env) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(errors) => errors,
    }
}

/// `(line, col, message)` of each error.
fn located(errors: &ConfigErrors) -> Vec<(usize, usize, &str)> {
    errors
        .errors
        .iter()
        .map(|e| (e.line, e.col, e.message.as_str()))
        .collect()
}

#[test]
fn shipped_gateway_yaml_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.yaml");
    let config = config::load_with_env(&path, &env).unwrap_or_else(|e| panic!("{e}"));
    // Safe by default: the shipped file serves this machine only.
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.broker, BrokerConfig::Memory);
    assert_eq!(
        config.static_dir.as_deref(),
        Some(Path::new("frontend-react/dist"))
    );
    assert_eq!(config.source.as_deref(), Some(path.as_path()));

    let rule = config.channel_rule("notifications").unwrap();
    assert_eq!(rule.subscribe, Policy::Public);
    let rule = config.channel_rule("anything.else").unwrap();
    assert_eq!(rule.pattern, ChannelPattern::Prefix(String::new()));
    assert_eq!(
        (rule.subscribe, rule.publish),
        (Policy::Public, Policy::Claims)
    );

    let [dev] = config.auth.api_keys.as_slice() else {
        panic!("expected one API key: {:?}", config.auth.api_keys);
    };
    assert_eq!(
        (dev.name.as_str(), dev.key.as_str(), dev.admin),
        ("dev", DEV_KEY, true)
    );
    assert_eq!(dev.publish, [ChannelPattern::Prefix(String::new())]);
    assert!(
        !format!("{config:?}").contains(DEV_KEY),
        "Debug leaks the key"
    );

    assert_eq!(
        config.cors.allowed_origins,
        ["http://localhost:5173", "http://localhost:8080"]
    );
    assert!(config.cors.allow_credentials && !config.cors.allow_any_origin);
    // The quick start: the reference upstream's two streams on their channels.
    let sources: Vec<(&str, &SourceTarget, &SourceChannel, SourceMode)> = config
        .sources
        .iter()
        .map(|s| (s.name.as_str(), &s.target, &s.channel, s.mode))
        .collect();
    assert_eq!(
        sources,
        [
            (
                "notifications",
                &SourceTarget::Url("http://127.0.0.1:9001/streams/notifications".into()),
                &SourceChannel::Fixed("notifications".into()),
                SourceMode::Always
            ),
            (
                "metrics",
                &SourceTarget::Url("http://127.0.0.1:9001/streams/metrics".into()),
                &SourceChannel::Fixed("metrics".into()),
                SourceMode::OnDemand
            ),
        ]
    );
    // /api/ goes to the reference upstream, whose health is checked.
    assert_eq!(config.routes.len(), 1);
    assert_eq!(
        (
            config.routes[0].path_prefix.as_str(),
            config.routes[0].upstream.as_str()
        ),
        ("/api/", "reference")
    );
    assert_eq!(config.upstreams[0].servers[0].addr, "127.0.0.1:9001");
    assert!(config.upstreams[0].health_check.is_some());
}

#[test]
fn embedded_default_is_the_shipped_file() {
    let config = Config::embedded_default_with_env(&env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.source, None);
    assert_eq!(config.source_name(), Path::new("<embedded gateway.yaml>"));
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let text = "\
listen: nowhere:http
sse:
  retyr: 3s
  heartbeat_interval: 15 seconds
  client_queue: -5
channels:
  - name: \"bad name\"
    subscribe: public
    colour: blue
cors:
  allowed_origins: [\"*\"]
  allow_credentials: true
";
    let errors = errors(text);
    let got = located(&errors);
    let expected = [
        (1, 9, "listen: invalid address"),
        (3, 3, "sse.retyr: unknown key"),
        (
            4,
            23,
            "sse.heartbeat_interval: invalid duration \"15 seconds\"",
        ),
        (5, 17, "sse.client_queue: must not be negative"),
        (
            7,
            11,
            "channels[0].name: invalid channel pattern \"bad name\"",
        ),
        (9, 5, "channels[0].colour: unknown key"),
        (
            11,
            21,
            "cors.allowed_origins[0]: \"*\" cannot be used with `allow_credentials: true`",
        ),
    ];
    assert_eq!(got.len(), expected.len(), "{errors}");
    for ((line, col, message), (want_line, want_col, want_start)) in got.iter().zip(expected) {
        assert_eq!((*line, *col), (want_line, want_col), "{message}");
        assert!(
            message.starts_with(want_start),
            "{message:?} should start with {want_start:?}"
        );
    }
    // One `file:line:col: message` per line.
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), expected.len());
    assert!(shown.starts_with("test.yaml:1:9: listen: invalid address \"nowhere:http\""));
}

#[test]
fn a_missing_key_variable_is_named_and_no_secret_is_shown() {
    let text = format!(
        "auth:\n  api_keys:\n    - name: other\n      key_env: {DEV_KEY_VAR}\n    \
         - name: ops\n      key_env: SSE_GATEWAY_TEST_UNSET_VARIABLE\n"
    );
    let errors = errors(&text);
    let got = located(&errors);
    assert_eq!(
        got,
        [(
            6,
            16,
            "auth.api_keys[1].key_env: environment variable SSE_GATEWAY_TEST_UNSET_VARIABLE is \
             not set"
        )]
    );
    assert!(!errors.to_string().contains(DEV_KEY));
}

#[test]
fn a_type_error_is_reported_alone_with_its_position() {
    let errors = errors("sse:\n  retyr: 3s\n  client_queue: lots\n");
    assert_eq!(
        located(&errors),
        [(3, 17, "sse.client_queue: expected an integer")]
    );
}

#[test]
fn a_syntax_error_is_reported_with_its_position() {
    let errors = errors("sse:\n  path: \"/events\n  retry: 3s\n");
    let [error] = errors.errors.as_slice() else {
        panic!("{errors}");
    };
    assert_eq!((error.file.as_str(), error.line), ("test.yaml", 2));
    assert!(error.col > 1, "{error}");
}

#[test]
fn an_unreadable_file_is_one_error() {
    let errors = config::load(Path::new("/nonexistent/gateway.yaml")).unwrap_err();
    assert_eq!(errors.errors.len(), 1);
    assert!(errors
        .to_string()
        .starts_with("/nonexistent/gateway.yaml:1:1: cannot read"));
}

#[test]
fn defaults_fill_an_empty_file() {
    let config = config::load_str("", None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(
        config.static_dir.as_deref(),
        Some(Path::new("frontend-react/dist"))
    );
    let sse = &config.sse;
    assert_eq!(sse.path, "/events");
    assert_eq!(sse.retry, Duration::from_secs(3));
    assert_eq!(sse.heartbeat_interval, Duration::from_secs(15));
    assert_eq!(sse.heartbeat, HeartbeatKind::Comment);
    assert_eq!(sse.client_queue, 1024);
    assert_eq!(sse.max_connection_lifetime, Some(Duration::from_secs(3600)));
    assert_eq!((sse.idle_timeout, sse.padding), (None, 0));
    assert_eq!(
        config.history,
        HistoryLimits {
            max_events: 1000,
            max_age: Duration::from_secs(600)
        }
    );
    assert!(config.channels.is_empty());
    assert_eq!(config.broker, BrokerConfig::Memory);
    assert_eq!(config.auth.cookie_name, "sse_token");
    assert!(config.auth.api_keys.is_empty() && config.auth.jwt.is_none());
    assert!(config.cors.allowed_origins.is_empty() && !config.cors.allow_credentials);
    let limits = &config.limits;
    assert_eq!(limits.max_connections, 19_000);
    assert_eq!(limits.max_event_bytes, 65_536);
    assert_eq!(limits.max_channels_per_connection, 32);
    assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(limits.max_connections_per_ip, None);
    assert_eq!(limits.publish_rate, None);
    assert_eq!(config.metrics.path, "/metrics");
    assert_eq!(config.shutdown.grace_period, Duration::from_secs(10));
}

#[test]
fn a_channel_rule_overrides_history_key_by_key() {
    let text = "\
history: {max_events: 500, max_age: 5m}
channels:
  - name: \"user.*\"
    history: {max_age: 1h}
  - name: ticks
    history: {max_events: 0}
";
    let config = config::load_str(text, None).unwrap_or_else(|e| panic!("{e}"));
    let hour = Duration::from_secs(3600);
    let five_minutes = Duration::from_secs(300);
    assert_eq!(config.history_for("user.42").max_events, 500);
    assert_eq!(config.history_for("user.42").max_age, hour);
    assert_eq!(config.history_for("ticks").max_events, 0);
    assert_eq!(config.history_for("ticks").max_age, five_minutes);
    assert_eq!(config.history_for("other").max_events, 500);
    assert_eq!(
        config.channel_rule("user.42").unwrap().subscribe,
        Policy::Claims
    );
}

#[test]
fn hostile_nesting_and_aliases_are_errors_not_crashes() {
    for depth in [17, 100, 100_000] {
        let text = format!("bogus: {}{}", "[".repeat(depth), "]".repeat(depth));
        let found = errors(&text);
        assert_eq!(found.errors.len(), 1, "{found}");
    }
    let nested = errors("sse:\n  bogus: [[[[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]]]\n");
    assert!(
        nested.to_string().contains("nest more than 16 levels"),
        "{nested}"
    );
    let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for (name, prev) in ["b", "c", "d", "e", "f", "g"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f"])
    {
        let refs = vec![format!("*{prev}"); 10].join(", ");
        laughs.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    assert!(errors(&laughs).to_string().contains("too large"));
}

proptest! {
    #[test]
    fn load_str_never_panics(text in "\\PC*") {
        let _ = config::load_str(&text, None);
    }

    /// Arbitrary text is mostly a syntax error; YAML-shaped text reaches the checks.
    #[test]
    fn load_str_never_panics_on_yaml_like_text(
        text in "([a-z_]{1,12}:( [-a-z0-9*:./\"\\[\\]{},]{0,16})?\n( {2,4}-? ?[a-z_]{1,12}: [-a-z0-9*:./]{0,12}\n){0,3}){0,6}"
    ) {
        let _ = config::load_str(&text, None);
    }
}
