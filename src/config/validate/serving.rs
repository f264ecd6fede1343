//! The sections about what the node serves: `listen`, `sse`, `metrics`, `shutdown`.

use super::*;

impl Checker<'_> {
    pub(super) fn listen(&mut self, listen: Option<&Spanned<String>>) -> SocketAddr {
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

    pub(super) fn sse(&mut self, raw: RawSse) -> SseConfig {
        let RawSse {
            path,
            retry,
            heartbeat_interval,
            heartbeat,
            client_queue,
            max_connection_lifetime,
            idle_timeout,
            padding,
            compression,
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
            compression: compression.is_some_and(|on| on.value),
        }
    }

    pub(super) fn metrics(&mut self, raw: RawMetrics, sse_path: &str) -> MetricsConfig {
        let RawMetrics { path } = raw;
        let checked = self.http_path("metrics.path", path.as_ref(), default::METRICS_PATH);
        if checked == sse_path {
            if let Some(path) = &path {
                self.err(path, "metrics.path: is also sse.path");
            }
        }
        MetricsConfig { path: checked }
    }

    pub(super) fn shutdown(&mut self, raw: RawShutdown) -> ShutdownConfig {
        let RawShutdown { grace_period } = raw;
        ShutdownConfig {
            grace_period: self.duration(
                "shutdown.grace_period",
                grace_period.as_ref(),
                default::GRACE_PERIOD,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

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
        assert_eq!(load_ok("static_dir: \"\"").static_dir, None);
        assert_eq!(
            load_ok("static_dir: ui").static_dir,
            Some(PathBuf::from("ui"))
        );
    }

    #[test]
    fn zero_lifetime_and_idle_timeout_mean_none() {
        let config = load_ok("sse: {max_connection_lifetime: 0s, idle_timeout: 30s}");
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
    fn compression_is_off_unless_turned_on_and_takes_only_a_boolean() {
        assert!(!load_ok("").sse.compression);
        assert!(load_ok("sse: {compression: true}").sse.compression);
        let found = problems("sse:\n  compression: gzip\n");
        assert!(
            found.len() == 1 && found[0].starts_with("2:16") && found[0].contains("true or false"),
            "{found:#?}"
        );
    }
}
