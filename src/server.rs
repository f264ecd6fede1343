//! The wiring: builds every part of a node from the first [`Config`], hands each consumer the
//! narrow handles it uses, and puts them into one pingora `Server`. The only module that sees
//! every part; nothing imports it back.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::connectors::TransportConnector;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::{self, NodeView};
use crate::auth::TicketStore;
use crate::broker::{redis, MemoryBroker, RedisBroker, SharedBroker};
use crate::config::{BrokerConfig, Config};
use crate::drain::Drain;
use crate::front::{self, Front, FrontApp, Gateway};
use crate::hub::Hub;
use crate::limits::Limits;
use crate::metrics;
use crate::proxy::{self, Pools};
use crate::reload::{ReloadTrigger, Reloader};
use crate::shutdown::SignalWatch;
use crate::snapshot::{self, Snapshot, Snapshots};
use crate::source::{SourceContext, SourceService, Sources};
use crate::stream::StreamContext;
use crate::tls::Certificates;

/// How long a node waits for Redis at startup before giving up (exit 2).
const REDIS_STARTUP_PATIENCE: Duration = Duration::from_secs(10);

/// Connection read buffer: none. pingora reads a request head into its own buffer, and a stream
/// never reads a body, so an L4 read buffer (64 KiB by pingora's default) would only be idle
/// memory on every open stream.
const CONN_READ_BUFFER: usize = 0;
/// Connection write buffer (pingora's default, one TCP segment): lets a reply's header and body
/// leave in one write.
const CONN_WRITE_BUFFER: usize = 1460;

/// How the process was started, beyond its config.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Take the listening sockets over from a running gateway (`--upgrade`).
    pub upgrade: bool,
    /// Where the running and the new process meet to hand the sockets over.
    pub upgrade_sock: Option<PathBuf>,
}

/// A configured, not yet running gateway.
pub struct Built {
    pub server: Server,
    /// The address the listener binds (a concrete port even when the config said 0).
    pub listen: SocketAddr,
    /// The address the HTTPS listener binds, when there is one (a concrete port too).
    pub https: Option<SocketAddr>,
    signals: SignalWatch,
    upgrade_sock: PathBuf,
}

impl Built {
    /// Runs until SIGTERM/SIGINT has drained every stream (or SIGQUIT handed the listener to a
    /// new process and drained); then the process exits 0.
    pub fn run(self) -> ! {
        self.server.run(RunArgs {
            shutdown_signal: Box::new(self.signals),
        });
        forget_pid(&self.upgrade_sock);
        std::process::exit(0)
    }
}

/// Builds the pingora server for `config`: the HTTP front on `listen` (and on `tls.listen`), the broker's replicator,
/// the sources, the config reloader and the janitor. `read_from` is the config file's bytes,
/// read just before `config` was loaded from it (`None` for the embedded default): the
/// reloader compares the file with them once it watches.
pub fn build(config: Config, read_from: Option<Vec<u8>>, launch: &Launch) -> Result<Built, String> {
    metrics::init();
    let listen = resolve_listen(config.listen)?;
    let node_id = node_id();
    let rules = snapshot::history_rules(Arc::new(config.clone()));
    let (hub, broker, replicator, tickets): (_, SharedBroker, _, _) = match &config.broker {
        BrokerConfig::Memory => {
            // The node's start: ids of an earlier run of this node are never reused.
            let epoch = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let hub = Hub::new(epoch, move |channel| rules(channel));
            let broker = Arc::new(MemoryBroker::new(hub.clone()));
            (hub, broker, None, TicketStore::default())
        }
        BrokerConfig::Redis { url } => {
            let (client, epoch) = redis::cluster_epoch(url, REDIS_STARTUP_PATIENCE)?;
            let hub = Hub::new(epoch, move |channel| rules(channel));
            let (broker, replicator) = RedisBroker::new(hub.clone(), client, &node_id);
            // Any node redeems the tickets of any node.
            let tickets = TicketStore::shared(broker.clone());
            (hub, broker, Some(replicator), tickets)
        }
    };
    metrics::BROKER_UP.set(i64::from(broker.is_up()));
    let tickets = Arc::new(tickets);
    // Shared brokers hold the limits across nodes.
    let limits = Limits::new(&config.limits, replicator.is_some().then(|| broker.clone()));
    let drain = Arc::new(Drain::default());
    let pools = Arc::new(Pools::default());
    let sources = Sources::new(SourceContext {
        hub: hub.clone(),
        broker: broker.clone(),
        drain: drain.clone(),
        pools: pools.clone(),
    });
    let routes = proxy::route_table(&config, &pools, None)?;
    let first = Snapshot::build(config, tickets.clone(), routes, 1)?;
    let config = first.config.clone();
    let snapshots = Snapshots::new(first);
    metrics::CONFIG_GENERATION.set(1);
    let node = NodeView {
        node_id,
        started_at: SystemTime::now(),
        hub: hub.clone(),
        broker: broker.clone(),
        drain: drain.clone(),
        sources: sources.clone(),
        snapshots: snapshots.clone(),
        pools: pools.clone(),
    };
    let gateway = Gateway {
        snapshots: snapshots.clone(),
        broker: broker.clone(),
        limits: limits.clone(),
        drain: drain.clone(),
        streams: StreamContext {
            hub: hub.clone(),
            drain: drain.clone(),
        },
        node: node.clone(),
        upstreams: TransportConnector::new(None),
        openapi: front::openapi_document()?,
    };
    // The HTTPS listener's address (port 0 resolved like `listen`'s) and the certificate it
    // presents, which reloads replace.
    let https = match &config.tls {
        Some(tls) => Some((
            resolve_listen(tls.listen)?,
            Certificates::new(tls.pair.clone()),
        )),
        None => None,
    };
    let (reload, reload_requests) = ReloadTrigger::new();
    let reloader = Reloader {
        snapshots: snapshots.clone(),
        tickets: tickets.clone(),
        hub: hub.clone(),
        limits: limits.clone(),
        sources: sources.clone(),
        pools: pools.clone(),
        certificates: https.as_ref().map(|(_, certificates)| certificates.clone()),
        requests: reload_requests.into(),
        trigger: reload.clone(),
        read_from: read_from.into(),
    };

    let conf = ServerConf {
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        // The drain happens in `SignalWatch` before pingora sees SIGTERM; there is nothing left
        // for pingora's own (unconditional) grace sleep to wait for. After a socket hand-over
        // (SIGQUIT) pingora waits this long while the streams drain (see `shutdown`).
        grace_period_seconds: Some(config.shutdown.grace_period.as_secs().saturating_add(2)),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: launch
            .upgrade_sock
            .clone()
            .unwrap_or_else(|| default_upgrade_sock(listen))
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: launch.upgrade,
        ..Opt::default()
    };
    let upgrade_sock = PathBuf::from(&conf.upgrade_sock);
    if launch.upgrade {
        tell_the_running_gateway(&upgrade_sock);
    }
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    // With `--upgrade`, this waits for the running gateway's sockets.
    server.bootstrap();
    remember_pid(&upgrade_sock);
    let phases = server.watch_execution_phase();

    let front = FrontApp::new(
        pingora::proxy::http_proxy(&server.configuration, Front { gateway }),
        snapshots.clone(),
    );
    let mut http = Service::new("gateway".to_string(), front);
    let l4_buffer = L4BufferSettings::new(CONN_READ_BUFFER, CONN_WRITE_BUFFER);
    http.add_listener(ListenerConfig::tcp(listen.to_string()).l4_buffer(l4_buffer));
    if let Some((tls_listen, certificates)) = &https {
        http.add_listener(
            ListenerConfig::tcp(tls_listen.to_string())
                .tls(tls_settings(certificates.clone())?)
                .l4_buffer(l4_buffer),
        );
    }
    server.add_service(http);
    if let Some(replicator) = replicator {
        server.add_service(background_service("redis replicator", replicator));
        server.add_service(background_service(
            "cluster reporter",
            Reporter { node: node.clone() },
        ));
    }
    server.add_service(background_service(
        "sources",
        SourceService {
            sources,
            config: config.clone(),
        },
    ));
    server.add_service(background_service("config reloader", reloader));
    server.add_service(background_service(
        "upstream health checks",
        HealthChecks { pools },
    ));
    server.add_service(background_service(
        "janitor",
        Janitor {
            hub: hub.clone(),
            limits,
            tickets,
        },
    ));
    let signals = SignalWatch {
        drain,
        hub,
        snapshots,
        reload,
        phases: phases.into(),
    };
    Ok(Built {
        server,
        listen,
        https: https.map(|(addr, _)| addr),
        signals,
        upgrade_sock,
    })
}

/// The HTTPS listener's TLS: the certificate `certificates` holds in force, and HTTP/2 preferred
/// over HTTP/1.1 by ALPN. Never given file names: pingora panics on files it cannot use, and the
/// pair was read and checked with the config.
fn tls_settings(certificates: Arc<Certificates>) -> Result<TlsSettings, String> {
    let mut settings = TlsSettings::intermediate("", "")
        .map_err(|e| format!("cannot set up the HTTPS listener: {e}"))?;
    settings.set_cert_resolver(certificates);
    settings.enable_h2();
    Ok(settings)
}

/// Where a running gateway and its replacement hand the listening sockets over when none is
/// given: one path per listening port, so gateways on different ports never meet, in the user's
/// runtime directory when there is one (pingora makes the socket world-writable: a shared
/// temp directory lets other local users reach it; see SECURITY.md).
fn default_upgrade_sock(listen: SocketAddr) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("sse-gateway-{}.upgrade.sock", listen.port()))
}

/// The file beside the upgrade socket that names the process serving the address, so that
/// `--upgrade` knows whom to tell.
fn pid_file(upgrade_sock: &Path) -> PathBuf {
    let mut name = upgrade_sock.as_os_str().to_owned();
    name.push(".pid");
    PathBuf::from(name)
}

fn remember_pid(upgrade_sock: &Path) {
    let path = pid_file(upgrade_sock);
    if let Err(e) = std::fs::write(&path, std::process::id().to_string()) {
        tracing::warn!(file = %path.display(), error = %e, "cannot write the pid file; `--upgrade` will need SIGQUIT sent by hand");
    }
}

/// Removes the pid file on the way out, unless a successor has written its own there.
fn forget_pid(upgrade_sock: &Path) {
    let path = pid_file(upgrade_sock);
    if read_pid(&path) == Some(std::process::id() as i32) {
        let _ = std::fs::remove_file(path);
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a running sse-gateway (a pid file may outlive its process, and the pid be
/// reused by another program, which must not get a SIGQUIT).
fn is_gateway(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim() == env!("CARGO_PKG_NAME"))
}

/// For `--upgrade`: once pingora listens on the upgrade socket (it does during bootstrap, which
/// blocks until the sockets arrive), sends SIGQUIT to the gateway serving the address, which
/// then hands them over. Without its pid file, says how to do it by hand.
fn tell_the_running_gateway(upgrade_sock: &Path) {
    let pid_path = pid_file(upgrade_sock);
    let Some(pid) = read_pid(&pid_path).filter(|pid| is_gateway(*pid)) else {
        tracing::warn!(
            file = %pid_path.display(),
            "no pid file of a running gateway: send it SIGQUIT now to hand its socket over"
        );
        return;
    };
    // A socket file left by an earlier run must not be taken for the one pingora is about to
    // listen on (pingora removes it too, but only once it gets there).
    let _ = std::fs::remove_file(upgrade_sock);
    let sock = upgrade_sock.to_owned();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            if std::time::Instant::now() > deadline {
                tracing::error!(sock = %sock.display(), "the upgrade socket never appeared");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let sent = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGQUIT,
        );
        match sent {
            Ok(()) => tracing::info!(pid, "asked the running gateway to hand its socket over"),
            Err(e) => tracing::error!(pid, error = %e, "cannot signal the running gateway"),
        }
    });
}

/// A name for this process among the nodes: the host name (when known), the pid and a random
/// part, so a restarted node is a new node.
fn node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        });
    let suffix = format!("{}-{:08x}", std::process::id(), rand::random::<u32>());
    match host {
        Some(host) => format!("{host}-{suffix}"),
        None => suffix,
    }
}

/// A concrete address for the listener: port 0 becomes a free port chosen now, so the address
/// can be printed (and read back by tests) before pingora binds it.
fn resolve_listen(addr: SocketAddr) -> Result<SocketAddr, String> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
    probe
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))
}

/// Shares this node's `/stats` and first clients with the cluster every second, for
/// `?scope=cluster` (only with a shared broker).
struct Reporter {
    node: NodeView,
}

#[async_trait]
impl BackgroundService for Reporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let report = admin::node_report(&self.node);
                    self.node.broker.report_node(&self.node.node_id, report).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Runs the active health checks of the upstream pools (those of the first config, and those
/// reloads build) on this service's runtime.
struct HealthChecks {
    pools: Arc<Pools>,
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.pools.start(tokio::runtime::Handle::current());
        let _ = shutdown.changed().await;
    }
}

/// Periodic upkeep: ages out history and forgets idle channels, prunes rate-limit state, drops
/// expired tickets, and refreshes the gauges.
struct Janitor {
    hub: Arc<Hub>,
    limits: Arc<Limits>,
    tickets: Arc<TicketStore>,
}

#[async_trait]
impl BackgroundService for Janitor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Hub::SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.hub.sweep();
                    self.limits.prune();
                    self.tickets.sweep();
                    let (channels, events) = self.hub.counts();
                    metrics::CHANNELS.set(channels as i64);
                    metrics::HISTORY_EVENTS.set(events as i64);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
