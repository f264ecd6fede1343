//! `broker`: memory, or Redis at a URL the client can use.

use super::*;

impl Checker<'_> {
    pub(super) fn broker(&mut self, raw: Option<Spanned<RawBroker>>) -> BrokerConfig {
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn brokers() {
        let config = load_ok("broker: {kind: redis, url: \"rediss://cache:6380\"}");
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
        let config = load_ok("broker: {kind: redis, url: \"unix:///run/redis.sock\"}");
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
}
