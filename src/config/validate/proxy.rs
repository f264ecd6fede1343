//! `upstreams` and `routes`: the pools and what is proxied to them.

use super::*;

impl Checker<'_> {
    pub(super) fn upstreams(
        &mut self,
        raw: BTreeMap<String, Spanned<RawUpstream>>,
    ) -> Vec<UpstreamConfig> {
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

    pub(super) fn upstream_ref(
        &mut self,
        key: &str,
        name: &Spanned<String>,
        upstreams: &[UpstreamConfig],
    ) {
        if !upstreams.iter().any(|u| u.name == name.value) {
            self.err(
                name,
                format!("{key}: no upstream named {:?} in `upstreams`", name.value),
            );
        }
    }

    pub(super) fn routes(
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
}
