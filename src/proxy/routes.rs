//! The route table: which `routes:` entry a request matches, with its pool and its rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::pool::Pool;
use crate::config::{Config, RouteConfig};
use crate::limits::KeyedRate;
use crate::reply::ApiError;

/// A route ready to serve: its settings, the pool it sends to, and its per-address rate.
pub struct Route {
    pub config: RouteConfig,
    pub pool: Arc<Pool>,
    rate: Option<Arc<KeyedRate<IpAddr>>>,
}

impl Route {
    /// Takes a token of the route's rate for `ip` (429 `rate_limited` with `Retry-After`).
    pub fn admit(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match (&self.rate, ip) {
            (Some(rate), Some(ip)) => {
                rate.check(&ip, "route_rate", "too many requests from this address")
            }
            _ => Ok(()),
        }
    }

    /// The path to send upstream: with `strip_prefix`, without the route's prefix (and still
    /// starting with `/`).
    pub fn upstream_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        if !self.config.strip_prefix {
            return Cow::Borrowed(path);
        }
        let rest = path
            .strip_prefix(self.config.path_prefix.as_str())
            .unwrap_or(path);
        if rest.starts_with('/') {
            Cow::Borrowed(rest)
        } else {
            Cow::Owned(format!("/{rest}"))
        }
    }
}

/// The routes of one config, in file order.
#[derive(Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// The routes of `config` over `pools` (one per upstream name, see
    /// [`super::Pools::update`]); `previous` hands over the rate buckets of routes whose rate did
    /// not change, so a reload does not refill them.
    pub fn build(
        config: &Config,
        pools: &HashMap<String, Arc<Pool>>,
        previous: Option<&RouteTable>,
    ) -> RouteTable {
        let routes = config
            .routes
            .iter()
            .filter_map(|route| {
                // Checked to exist by the config.
                let pool = pools.get(&route.upstream)?.clone();
                let rate = route.rate_limit.map(|limit| {
                    previous
                        .and_then(|table| {
                            table.routes.iter().find(|old| {
                                old.config.path_prefix == route.path_prefix
                                    && old.config.host == route.host
                                    && old.config.rate_limit == route.rate_limit
                            })
                        })
                        .and_then(|old| old.rate.clone())
                        .unwrap_or_else(|| Arc::new(KeyedRate::new(limit)))
                });
                Some(Arc::new(Route {
                    config: route.clone(),
                    pool,
                    rate,
                }))
            })
            .collect();
        RouteTable { routes }
    }

    /// The first route whose prefix starts `path` and whose host, if set, is `host` (compared
    /// without the port and case).
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        let host = host.map(|h| strip_port(h).to_ascii_lowercase());
        self.routes.iter().find(|route| {
            path.starts_with(route.config.path_prefix.as_str())
                && route
                    .config
                    .host
                    .as_deref()
                    .is_none_or(|want| host.as_deref() == Some(want))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Forgets rate state of addresses that went quiet (the janitor's round).
    pub fn prune(&self) {
        for route in &self.routes {
            if let Some(rate) = &route.rate {
                rate.prune();
            }
        }
    }
}

/// `host:port` → `host` (an IPv6 literal keeps its brackets).
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(at) if !host[at..].contains(']') => &host[..at],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_not_part_of_the_host() {
        assert_eq!(strip_port("api.example.com:8443"), "api.example.com");
        assert_eq!(strip_port("api.example.com"), "api.example.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
