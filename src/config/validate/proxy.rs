//! `upstreams` and `routes`: the pools and what is proxied to them.

use super::*;

impl Checker<'_> {
    /// `trusted_proxies`: addresses or CIDRs.
    pub(super) fn trusted_proxies(&mut self, raw: Vec<Spanned<String>>) -> Vec<Cidr> {
        raw.iter()
            .enumerate()
            .filter_map(|(i, entry)| {
                let cidr = Cidr::parse(&entry.value);
                if cidr.is_none() {
                    self.err(
                        entry,
                        format!(
                            "trusted_proxies[{i}]: invalid {:?}: expected an address or a CIDR like 10.0.0.0/8",
                            entry.value
                        ),
                    );
                }
                cidr
            })
            .collect()
    }

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
                hash_key,
                health_check,
                passive,
                connect_timeout,
                tls,
                sni,
                ca_file,
            } = entry.value;
            let servers = servers.unwrap_or_default();
            if servers.is_empty() {
                self.at(
                    Pos::of(entry.referenced),
                    format!("{at}: needs `servers`, a list of host:port"),
                );
            }
            let servers = servers
                .iter()
                .enumerate()
                .map(|(i, server)| self.server(&format!("{at}.servers[{i}]"), server))
                .collect();
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
            let hash_key = hash_key
                .map(|key| self.hash_key(&format!("{at}.hash_key"), &key))
                .unwrap_or(HashKey::ClientIp);
            let health_check = health_check.map(|hc| self.health_check(&at, hc.value));
            let passive = passive.map(|p| {
                let RawPassive {
                    failures,
                    eject_for,
                } = p.value;
                PassiveConfig {
                    failures: u32::try_from(self.count(
                        &format!("{at}.passive.failures"),
                        failures.as_ref(),
                        1,
                        default::PASSIVE_FAILURES,
                    ))
                    .unwrap_or(u32::MAX),
                    eject_for: self.positive_duration(
                        &format!("{at}.passive.eject_for"),
                        eject_for.as_ref(),
                        default::EJECT_FOR,
                    ),
                }
            });
            let connect_timeout = self.positive_duration(
                &format!("{at}.connect_timeout"),
                connect_timeout.as_ref(),
                default::CONNECT_TIMEOUT,
            );
            let sni = sni.map(|sni| {
                if !is_host_name(&sni.value) {
                    self.err(&sni, format!("{at}.sni: invalid host name {:?}", sni.value));
                }
                sni.value
            });
            let ca_file = ca_file.map(|path| {
                if let Err(problem) = check_ca_file(&path.value) {
                    self.err(&path, format!("{at}.ca_file: {problem}"));
                }
                PathBuf::from(path.value)
            });
            let tls = tls.unwrap_or(false);
            if !tls && ca_file.is_some() {
                self.at(
                    Pos::of(entry.referenced),
                    format!("{at}: ca_file is only used with `tls: true`"),
                );
            }
            out.push(UpstreamConfig {
                name,
                servers,
                balance,
                hash_key,
                health_check,
                passive,
                connect_timeout,
                tls,
                sni,
                ca_file,
            });
        }
        out
    }

    fn server(&mut self, at: &str, server: &Spanned<RawServer>) -> ServerConfig {
        let RawServer { addr, weight } = &server.value;
        if !is_host_port(addr) {
            self.err(
                server,
                format!("{at}: invalid server {addr:?}: expected host:port"),
            );
        }
        let weight = match weight {
            None => 1,
            Some(w) if (1..=1000).contains(w) => *w as usize,
            Some(w) => {
                self.err(server, format!("{at}.weight: {w} is not in 1..=1000"));
                1
            }
        };
        ServerConfig {
            addr: addr.clone(),
            weight,
        }
    }

    fn hash_key(&mut self, at: &str, key: &Spanned<String>) -> HashKey {
        let text = key.value.as_str();
        let named = |prefix: &str| text.strip_prefix(prefix).filter(|n| is_http_token(n));
        if text == "client_ip" {
            HashKey::ClientIp
        } else if text == "path" {
            HashKey::Path
        } else if let Some(name) = named("header:") {
            HashKey::Header(name.to_ascii_lowercase())
        } else if let Some(name) = named("cookie:") {
            HashKey::Cookie(name.to_owned())
        } else {
            self.err(
                key,
                format!("{at}: {text:?} is not client_ip, header:NAME, cookie:NAME or path"),
            );
            HashKey::ClientIp
        }
    }

    fn health_check(&mut self, at: &str, raw: RawHealthCheck) -> HealthCheckConfig {
        let RawHealthCheck {
            path,
            interval,
            timeout,
            healthy_after,
            unhealthy_after,
        } = raw;
        let at = format!("{at}.health_check");
        HealthCheckConfig {
            path: self.http_path(
                &format!("{at}.path"),
                path.as_ref(),
                default::HEALTH_CHECK_PATH,
            ),
            interval: self.positive_duration(
                &format!("{at}.interval"),
                interval.as_ref(),
                default::HEALTH_CHECK_INTERVAL,
            ),
            timeout: self.positive_duration(
                &format!("{at}.timeout"),
                timeout.as_ref(),
                default::HEALTH_CHECK_TIMEOUT,
            ),
            healthy_after: self.count(
                &format!("{at}.healthy_after"),
                healthy_after.as_ref(),
                1,
                default::HEALTHY_AFTER,
            ),
            unhealthy_after: self.count(
                &format!("{at}.unhealthy_after"),
                unhealthy_after.as_ref(),
                1,
                default::UNHEALTHY_AFTER,
            ),
        }
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
                auth,
                timeout,
                rate_limit,
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
                host.value.to_ascii_lowercase()
            });
            let auth = self.one_of(
                &format!("{at}.auth"),
                auth.as_ref(),
                &[
                    ("public", RouteAuth::Public),
                    ("authenticated", RouteAuth::Authenticated),
                ],
                RouteAuth::Public,
            );
            let timeout = self.optional_duration(
                &format!("{at}.timeout"),
                timeout.as_ref(),
                Some(default::ROUTE_TIMEOUT),
            );
            let rate_limit = rate_limit.and_then(|r| self.rate(&format!("{at}.rate_limit"), r));
            out.push(RouteConfig {
                path_prefix,
                host,
                upstream: upstream.value,
                strip_prefix: strip_prefix.unwrap_or(false),
                auth,
                timeout,
                rate_limit,
            });
        }
        out
    }
}

/// Whether `path` holds at least one PEM certificate this build can use as a CA.
fn check_ca_file(path: &str) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let certs = crate::proxy::tls::parse_ca_bundle(&text);
    if certs.is_empty() {
        return Err(format!("{path} holds no PEM certificate"));
    }
    Ok(())
}
