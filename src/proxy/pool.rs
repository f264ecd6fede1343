//! Upstream pools: pingora's load balancers over each `upstreams:` entry, over the state of its
//! servers, and the registry that keeps a pool whose definition a reload did not change, with
//! its health.

use std::collections::{BTreeSet, HashMap};
use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pingora::lb::discovery::Static;
use pingora::lb::selection::{Consistent, Random, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use tokio::runtime::Handle;
use tokio::sync::watch;

use super::health;
use super::least_connections::LeastConnections;
use super::servers::{InFlight, ServerState, ServerTable};
use crate::config::{Balance, HashKey, UpstreamConfig};
use crate::metrics;

/// How many servers a selection may look at before giving up (every one, in pools of any
/// sensible size).
const MAX_ITERATIONS: usize = 256;

/// pingora's balancer of the configured kind.
enum Balancer {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Random(Arc<LoadBalancer<Random>>),
    Consistent(Arc<LoadBalancer<Consistent>>),
    LeastConnections(Arc<LoadBalancer<LeastConnections>>),
}

/// Applies `$body` to whichever balancer `$pool` holds, as `$lb`.
macro_rules! with_balancer {
    ($balancer:expr, $lb:ident => $body:expr) => {
        match $balancer {
            Balancer::RoundRobin($lb) => $body,
            Balancer::Random($lb) => $body,
            Balancer::Consistent($lb) => $body,
            Balancer::LeastConnections($lb) => $body,
        }
    };
}

/// One `upstreams:` entry at work.
pub struct Pool {
    pub config: UpstreamConfig,
    servers: Arc<ServerTable>,
    balancer: Balancer,
    ca: Option<Arc<CaType>>,
    /// Stops the pool's health checks when the pool goes (a reload removed or changed it).
    stop_checks: Option<watch::Sender<bool>>,
    /// The checks' stop signal until they are started on a runtime.
    checks_pending: Mutex<Option<watch::Receiver<bool>>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop_checks {
            stop.send_replace(true);
        }
    }
}

/// A server chosen for a request, counted in flight until dropped.
#[derive(Debug)]
pub struct Selected(InFlight);

impl Selected {
    pub fn server(&self) -> &Arc<ServerState> {
        self.0.server()
    }
}

impl Pool {
    /// Builds the pool of `config`: resolves its servers (blocking DNS for host names) and
    /// starts its active health checks on `runtime`.
    pub fn build(config: &UpstreamConfig, runtime: Option<&Handle>) -> Result<Pool, String> {
        let mut states = Vec::new();
        let mut backends = BTreeSet::new();
        for server in &config.servers {
            let addr = server
                .addr
                .to_socket_addrs()
                .map_err(|e| {
                    format!(
                        "upstreams.{}: cannot resolve {}: {e}",
                        config.name, server.addr
                    )
                })?
                .next()
                .ok_or_else(|| {
                    format!(
                        "upstreams.{}: {} resolves to nothing",
                        config.name, server.addr
                    )
                })?;
            let backend = Backend {
                addr: SocketAddr::Inet(addr),
                weight: server.weight,
                ext: Default::default(),
            };
            states.push(Arc::new(ServerState::new(
                backend.addr.clone(),
                server.addr.clone(),
            )));
            backends.insert(backend);
        }
        let servers = Arc::new(ServerTable::from_states(states));
        let discovery = || Backends::new(Static::new(backends.clone()));
        let balancer = match config.balance {
            Balance::RoundRobin => {
                Balancer::RoundRobin(Arc::new(LoadBalancer::from_backends(discovery())))
            }
            Balance::Random => Balancer::Random(Arc::new(LoadBalancer::from_backends(discovery()))),
            Balance::ConsistentHash => {
                Balancer::Consistent(Arc::new(LoadBalancer::from_backends(discovery())))
            }
            Balance::LeastConnections => Balancer::LeastConnections(Arc::new(
                LoadBalancer::from_backends_with_config(discovery(), Some(servers.clone())),
            )),
        };
        let ca = match (&config.ca_file, config.tls) {
            (Some(path), true) => Some(super::tls::load_ca(path)?),
            _ => None,
        };
        let mut pool = Pool {
            config: config.clone(),
            servers,
            balancer,
            ca,
            stop_checks: None,
            checks_pending: Mutex::new(None),
        };
        pool.prepare_checks();
        if let Some(runtime) = runtime {
            pool.run_checks(runtime);
        }
        // Every series of the pool from its start, so dashboards and alerts see zeros, not gaps.
        metrics::UPSTREAM_LATENCY.with_label_values(&[&config.name]);
        for server in pool.servers.all() {
            metrics::UPSTREAM_HEALTHY
                .with_label_values(&[&config.name, server.label()])
                .set(1);
            for class in metrics::UPSTREAM_CLASSES {
                metrics::UPSTREAM_REQUESTS.with_label_values(&[
                    &config.name,
                    server.label(),
                    class,
                ]);
            }
        }
        Ok(pool)
    }

    /// Fills the balancer from its static backends and, with `health_check`, sets up the
    /// checks; they run once [`Pool::run_checks`] is given a runtime.
    fn prepare_checks(&mut self) {
        with_balancer!(&self.balancer, lb => {
            use futures_util::FutureExt;
            // Static discovery never waits.
            let _ = lb.update().now_or_never();
        });
        let Some(check) = &self.config.health_check else {
            return;
        };
        let observer = health::Observer::new(&self.config.name, self.servers.clone());
        let probe = health::http_check(&self.config, check, observer, self.ca.clone());
        let interval = check.interval;
        let ready = with_balancer!(&mut self.balancer, lb => match Arc::get_mut(lb) {
            Some(lb) => {
                lb.set_health_check(probe);
                lb.health_check_frequency = Some(interval);
                true
            }
            None => false,
        });
        if ready {
            let (stop, stopped) = watch::channel(false);
            self.stop_checks = Some(stop);
            *self.checks_pending.lock() = Some(stopped);
        }
    }

    /// Starts the health checks on `runtime`, once (no-op without `health_check`).
    pub fn run_checks(&self, runtime: &Handle) {
        let Some(stopped) = self.checks_pending.lock().take() else {
            return;
        };
        with_balancer!(&self.balancer, lb => {
            let lb = lb.clone();
            runtime.spawn(async move { lb.run(stopped, None).await });
        });
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn servers(&self) -> &ServerTable {
        &self.servers
    }

    /// A healthy server not ejected and not in `tried`, chosen by the pool's balance (`key`
    /// for consistent hashing); `None` when there is none.
    pub fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<Selected> {
        let accept = |backend: &Backend, healthy: bool| {
            healthy
                && !tried.contains(&backend.addr)
                && self
                    .servers
                    .get(&backend.addr)
                    .is_some_and(|s| !s.is_ejected())
        };
        let backend =
            with_balancer!(&self.balancer, lb => lb.select_with(key, MAX_ITERATIONS, accept))?;
        let server = self.servers.get(&backend.addr)?;
        Some(Selected(server.start()))
    }

    /// How to connect to `server`: TLS, SNI and CA as configured, and the connect timeout.
    pub fn peer(&self, server: &ServerState, read_timeout: Option<Duration>) -> HttpPeer {
        let sni = match &self.config.sni {
            Some(sni) => sni.clone(),
            None if self.config.tls => host_of(server.label()).to_owned(),
            None => String::new(),
        };
        let mut peer = HttpPeer::new(server.addr().clone(), self.config.tls, sni);
        peer.options.connection_timeout = Some(self.config.connect_timeout);
        peer.options.read_timeout = read_timeout;
        peer.options.ca = self.ca.clone();
        peer
    }

    /// For `/stats`.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            name: self.config.name.clone(),
            balance: format!("{:?}", self.config.balance),
            servers: self
                .servers
                .all()
                .map(|s| ServerStats {
                    addr: s.label().to_owned(),
                    healthy: s.is_healthy(),
                    ejected: s.is_ejected(),
                    in_flight: s.in_flight(),
                })
                .collect(),
        }
    }

    /// The key `consistent_hash` hashes for a request.
    pub fn hash_key<'a>(&self, request: &'a HashInput<'a>) -> std::borrow::Cow<'a, [u8]> {
        use std::borrow::Cow;
        match &self.config.hash_key {
            HashKey::ClientIp => Cow::Owned(request.client_ip.to_string().into_bytes()),
            HashKey::Path => Cow::Borrowed(request.path.as_bytes()),
            HashKey::Header(name) => Cow::Borrowed(
                request
                    .headers
                    .get(name.as_str())
                    .map_or(&b""[..], |v| v.as_bytes()),
            ),
            HashKey::Cookie(name) => {
                Cow::Borrowed(crate::auth::cookie_value(request.headers, name).unwrap_or(b""))
            }
        }
    }
}

/// What a request offers to `consistent_hash`.
pub struct HashInput<'a> {
    pub client_ip: std::net::IpAddr,
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A pool in `/stats`.
#[derive(Debug, serde::Serialize)]
pub struct PoolStats {
    pub name: String,
    pub balance: String,
    pub servers: Vec<ServerStats>,
}

/// A server in `/stats`.
#[derive(Debug, serde::Serialize)]
pub struct ServerStats {
    pub addr: String,
    /// The active check's verdict (true without checks).
    pub healthy: bool,
    /// Out for a while after passive failures.
    pub ejected: bool,
    pub in_flight: usize,
}

/// The pools in use, by name. A reload keeps a pool whose definition did not change (with its
/// health and in-flight counts), and builds the others anew.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    /// Where health checks run (the proxy service's runtime), set when it starts.
    runtime: Mutex<Option<Handle>>,
}

impl Pools {
    /// The pools of `upstreams`, reusing those unchanged; the others are dropped (their checks
    /// stop) once no request holds them.
    pub fn update(
        &self,
        upstreams: &[UpstreamConfig],
    ) -> Result<HashMap<String, Arc<Pool>>, String> {
        let runtime = self.runtime.lock().clone();
        let current = self.pools.lock().clone();
        let mut next = HashMap::with_capacity(upstreams.len());
        for config in upstreams {
            let pool = match current.get(&config.name) {
                Some(pool) if pool.config == *config => pool.clone(),
                _ => Arc::new(Pool::build(config, runtime.as_ref())?),
            };
            next.insert(config.name.clone(), pool);
        }
        for (name, pool) in &current {
            if !next.contains_key(name) {
                for server in pool.servers.all() {
                    let _ = metrics::UPSTREAM_HEALTHY.remove_label_values(&[name, server.label()]);
                }
            }
        }
        *self.pools.lock() = next.clone();
        Ok(next)
    }

    /// Starts the health checks of the pools built before the runtime was known (at startup),
    /// and of every pool built from now on.
    pub fn start(&self, runtime: Handle) {
        for pool in self.pools.lock().values() {
            pool.run_checks(&runtime);
        }
        *self.runtime.lock() = Some(runtime);
    }

    /// Every pool, for `/stats`.
    pub fn stats(&self) -> Vec<PoolStats> {
        let mut stats: Vec<PoolStats> = self.pools.lock().values().map(|p| p.stats()).collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    pub fn get(&self, name: &str) -> Option<Arc<Pool>> {
        self.pools.lock().get(name).cloned()
    }
}
