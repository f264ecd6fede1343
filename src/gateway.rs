//! The HTTP front: one pingora `HttpServerApp` that routes and answers every gateway endpoint
//! (streams are handed off to tasks of their own, see [`stream::open`]), the janitor, and the
//! wiring that builds the pingora `Server` from a [`Config`].

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::server::{RunArgs, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use pingora::Result;

use crate::admin;
use crate::auth::{self, Action, Authenticator, Endpoint, Principal, TicketStore};
use crate::broker::{redis, MemoryBroker, RedisBroker, Replicator, SharedBroker};
use crate::config::{BrokerConfig, Config};
use crate::cors;
use crate::hub::Hub;
use crate::limits::{Limits, StreamPermit};
use crate::metrics;
use crate::publish;
use crate::reply::{self, ApiError, CommonHeaders};
use crate::shutdown::{Drain, SignalWatch};
use crate::source::{SourceService, SourceStatus};
use crate::static_files;
use crate::stream::{self, StreamRequest, StreamSettings};

/// Everything the request handlers share.
pub struct App {
    pub config: ArcSwap<Config>,
    pub auth: ArcSwap<Authenticator>,
    /// Connect tickets not yet redeemed (in this process, or in the shared broker); outlives
    /// any one `Authenticator` (config reload).
    pub tickets: Arc<TicketStore>,
    pub hub: Arc<Hub>,
    pub broker: SharedBroker,
    pub drain: Arc<Drain>,
    pub limits: Arc<Limits>,
    pub grace_period: Duration,
    pub started_at: SystemTime,
    /// One per entry of `sources:`, in config order.
    pub sources: Vec<Arc<SourceStatus>>,
    /// This process among the nodes of a cluster (`/stats`, `/clients`, Redis leases).
    pub node_id: String,
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

/// How long a node waits for Redis at startup before giving up (exit 2).
const REDIS_STARTUP_PATIENCE: Duration = Duration::from_secs(10);

impl App {
    /// The shared state for `config`; with the Redis broker, also the replicator that must run as
    /// a background service (it connects to Redis first, to learn the cluster's id epoch).
    pub fn new(config: Config) -> std::result::Result<(Arc<App>, Option<Replicator>), String> {
        let rules = config.clone();
        let limits_for = move |channel: &str| rules.history_for(channel);
        let node_id = node_id();
        let (hub, broker, replicator, tickets): (_, SharedBroker, _, _) = match &config.broker {
            BrokerConfig::Memory => {
                // The node's start: ids of an earlier run of this node are never reused.
                let epoch = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let hub = Hub::new(epoch, limits_for);
                let broker = Arc::new(MemoryBroker::new(hub.clone()));
                (hub, broker, None, TicketStore::default())
            }
            BrokerConfig::Redis { url } => {
                let (client, epoch) = redis::cluster_epoch(url, REDIS_STARTUP_PATIENCE)?;
                let hub = Hub::new(epoch, limits_for);
                let (broker, replicator) = RedisBroker::new(hub.clone(), client, &node_id);
                // Any node redeems the tickets of any node.
                let tickets = TicketStore::shared(broker.clone());
                (hub, broker, Some(replicator), tickets)
            }
        };
        let tickets = Arc::new(tickets);
        let authenticator = Authenticator::new(&config.auth, tickets.clone())?;
        let app = Arc::new(App {
            sources: config
                .sources
                .iter()
                .map(|source| Arc::new(SourceStatus::new(source)))
                .collect(),
            auth: ArcSwap::from_pointee(authenticator),
            tickets,
            grace_period: config.shutdown.grace_period,
            // Shared brokers hold the limits across nodes.
            limits: Limits::new(&config.limits, replicator.is_some().then(|| broker.clone())),
            config: ArcSwap::from_pointee(config),
            hub,
            broker,
            drain: Arc::new(Drain::default()),
            started_at: SystemTime::now(),
            node_id,
        });
        metrics::BROKER_UP.set(i64::from(app.broker.is_up()));
        Ok((app, replicator))
    }
}

/// The gateway's HTTP application: answers every endpoint itself. pingora's `ServeHttp` would
/// buffer whole responses, and its proxy path keeps a large per-request future alive for as long
/// as a stream lasts; this app hands streams off instead (see [`stream::open`]).
pub struct Gateway {
    app: Arc<App>,
}

/// What handling a request left to do.
enum Handled {
    /// A reply was written; the connection may serve another request.
    Replied,
    /// The request opens a stream; the session is needed to hand it off.
    Stream(Box<StreamStart>),
}

struct StreamStart {
    common: CommonHeaders,
    req: StreamRequest,
    who: Option<Principal>,
    permit: StreamPermit,
    settings: StreamSettings,
}

#[async_trait]
impl HttpServerApp for Gateway {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // The whole request head must arrive within `header_read_timeout`: pingora's own read
        // timeout restarts with every byte, which a slowloris client exploits.
        let header_timeout = self.app.config.load().limits.header_read_timeout;
        match tokio::time::timeout(header_timeout, session.read_request()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return None,
            Ok(Err(e)) => {
                // Only the kind: pingora's message quotes the raw request head, which can hold
                // credentials (`Authorization`, cookies, `?access_token=`).
                tracing::debug!(error = e.etype().as_str(), "unreadable request");
                return None;
            }
            Err(_) => {
                metrics::LIMIT_REJECTIONS
                    .with_label_values(&["header_timeout"])
                    .inc();
                tracing::debug!(
                    ?header_timeout,
                    "request head not complete in time; closing"
                );
                return None;
            }
        }
        session.set_keepalive(if *shutdown.borrow() {
            None
        } else {
            Some(KEEPALIVE_SECONDS)
        });
        match self.handle(&mut session).await {
            Handled::Replied => {
                let settings = HttpPersistentSettings::for_session(&session);
                match session.finish().await {
                    Ok(reusable) => {
                        reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings))
                    }
                    Err(_) => None,
                }
            }
            Handled::Stream(start) => {
                let StreamStart {
                    common,
                    req,
                    who,
                    permit,
                    settings,
                } = *start;
                stream::open(session, &self.app, &common, req, who, permit, settings).await;
                None
            }
        }
    }
}

/// How long an idle keep-alive connection may wait for its next request.
const KEEPALIVE_SECONDS: u64 = 60;

impl Gateway {
    async fn handle(&self, session: &mut ServerSession) -> Handled {
        let cfg = self.app.config.load_full();
        let origin = session.req_header().headers.get(http::header::ORIGIN);
        let req = session.req_header();
        let host = req
            .headers
            .get(http::header::HOST)
            .map(|v| v.as_bytes())
            .or_else(|| req.uri.authority().map(|a| a.as_str().as_bytes()));
        let checked = request_size(session.req_header())
            .and_then(|()| cors::check(&cfg.cors, origin.map(|v| v.as_bytes()), host));
        let result = match checked {
            Ok(common) => match self.route(session, &cfg, &common).await {
                Ok(Some((req, who, permit))) => {
                    return Handled::Stream(Box::new(StreamStart {
                        common,
                        req,
                        who,
                        permit,
                        settings: StreamSettings::from_config(&cfg),
                    }))
                }
                Ok(None) => Ok(()),
                Err(e) => {
                    refused(session, &e);
                    reply::error(session, &common, &e).await
                }
            },
            Err(e) => reply::error(session, &CommonHeaders::default(), &e).await,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "reply not fully written; client gone");
        }
        Handled::Replied
    }

    /// Answers the request, or returns the stream it asks for.
    async fn route(
        &self,
        session: &mut ServerSession,
        cfg: &Config,
        common: &CommonHeaders,
    ) -> std::result::Result<Option<AdmittedStream>, ApiError> {
        let app = &self.app;
        let method = session.req_header().method.clone();
        let uri = session.req_header().uri.clone();
        let path = uri.path();
        let query = uri.query();
        let sent = |r: Result<()>| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reply not fully written; client gone");
            }
            Ok(None)
        };

        if method == Method::OPTIONS {
            let headers = cors::preflight_headers();
            return sent(reply::send(session, common, 204, "", &headers, Bytes::new()).await);
        }

        if path == cfg.sse.path {
            allow(&method, &[Method::GET])?;
            return self.check_stream(session, cfg, query).await.map(Some);
        }
        if path == cfg.metrics.path {
            allow(&method, &[Method::GET, Method::HEAD])?;
            let body = metrics::render();
            let ct = "text/plain; version=0.0.4; charset=utf-8";
            return sent(reply::send(session, common, 200, ct, &[], body.into()).await);
        }
        match path {
            "/broadcast" => {
                allow(&method, &[Method::POST])?;
                let accepted = self.publish(session, cfg).await?;
                sent(reply::json(session, common, 202, &accepted).await)
            }
            "/tickets" => {
                allow(&method, &[Method::POST])?;
                let issued = self.issue_ticket(session).await?;
                let body = serde_json::json!({
                    "ticket": issued.ticket,
                    "expires_in": issued.expires_in,
                });
                // The reply is a credential: no cache may keep it.
                let headers = [("cache-control", "no-store".to_string())];
                let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
                sent(reply::send(session, common, 201, "application/json", &headers, body).await)
            }
            "/healthz" => {
                allow(&method, &[Method::GET, Method::HEAD])?;
                let status = serde_json::json!({"status": "ok"});
                sent(reply::json(session, common, 200, &status).await)
            }
            "/readyz" => {
                allow(&method, &[Method::GET, Method::HEAD])?;
                if app.drain.is_draining() {
                    return Err(ApiError::draining());
                }
                if !app.broker.is_up() {
                    return Err(ApiError::broker_unavailable("the broker is not reachable"));
                }
                let status = serde_json::json!({"status": "ready"});
                sent(reply::json(session, common, 200, &status).await)
            }
            "/stats" => {
                allow(&method, &[Method::GET])?;
                self.require_admin(session)?;
                if admin::cluster_scope(query)? {
                    let stats = admin::cluster_stats(app).await?;
                    return sent(reply::json(session, common, 200, &stats).await);
                }
                sent(reply::json(session, common, 200, &admin::stats(app)).await)
            }
            "/clients" => {
                allow(&method, &[Method::GET])?;
                self.require_admin(session)?;
                if admin::cluster_scope(query)? {
                    let clients = admin::cluster_clients(app).await?;
                    return sent(reply::json(session, common, 200, &clients).await);
                }
                let page = admin::clients(app, query)?;
                sent(reply::json(session, common, 200, &page).await)
            }
            _ if path.starts_with("/clients/") => {
                allow(&method, &[Method::DELETE])?;
                self.require_admin(session)?;
                admin::disconnect(app, &path["/clients/".len()..])?;
                sent(reply::send(session, common, 204, "", &[], Bytes::new()).await)
            }
            _ => {
                let root = cfg.static_dir.as_deref().ok_or_else(ApiError::not_found)?;
                allow(&method, &[Method::GET, Method::HEAD])?;
                let file = static_files::lookup(root, path).await?;
                let cache = if file.immutable {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                };
                let headers = [("cache-control", cache.to_string())];
                sent(
                    reply::send(
                        session,
                        common,
                        200,
                        file.content_type,
                        &headers,
                        file.body.into(),
                    )
                    .await,
                )
            }
        }
    }

    fn require_admin(&self, session: &ServerSession) -> std::result::Result<(), ApiError> {
        let who = self
            .app
            .auth
            .load()
            .identify(session.req_header(), Endpoint::Api)?;
        auth::require_admin(who.as_ref())
    }

    /// `POST /tickets`: a single-use ticket standing for the request's credential (headers or
    /// cookie; never a query token or another ticket), within the credential's ticket rate.
    async fn issue_ticket(
        &self,
        session: &mut ServerSession,
    ) -> std::result::Result<auth::Issued, ApiError> {
        if self.app.drain.is_draining() {
            return Err(ApiError::draining());
        }
        // Nothing is read from a body; one that was sent must not be taken for the next request.
        if !session.is_body_done() {
            session.set_keepalive(None);
        }
        let authenticator = self.app.auth.load_full();
        let who = authenticator
            .identify(session.req_header(), Endpoint::Tickets)?
            .ok_or_else(|| ApiError::new(401, "unauthorized", "a ticket needs a credential"))?;
        auth::require_time_left(Some(&who))?;
        self.app.limits.admit_ticket(&who.name).await?;
        authenticator.issue_ticket(&who).await
    }

    async fn publish(
        &self,
        session: &mut ServerSession,
        cfg: &Config,
    ) -> std::result::Result<publish::Accepted, ApiError> {
        if self.app.drain.is_draining() {
            return Err(ApiError::draining());
        }
        let who = self
            .app
            .auth
            .load()
            .identify(session.req_header(), Endpoint::Api)?;
        // Keyed by credential, or by address for anonymous publishers (public channels).
        let publisher = match &who {
            Some(p) => p.name.to_string(),
            None => client_ip(session).map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
        };
        self.app.limits.admit_publish(&publisher).await?;
        publish::require_json(session)?;
        let body = publish::read_body(session, cfg.limits.max_event_bytes).await?;
        let draft = publish::parse(&body, cfg)?;
        auth::authorize_channels(cfg, who.as_ref(), Action::Publish, &draft.channels)?;
        let channels = draft.channels.iter().map(|c| c.to_string()).collect();
        let id = self
            .app
            .broker
            .publish(draft)
            .await
            .map_err(|e| ApiError::broker_unavailable(e.to_string()))?;
        Ok(publish::Accepted {
            id: id.to_string(),
            channels,
        })
    }

    /// Everything that can refuse a stream, before anything is written; the permit holds the
    /// stream's place in the connection limits. A ticket is spent last, once nothing else can
    /// refuse the stream: a refused request leaves it usable.
    async fn check_stream(
        &self,
        session: &ServerSession,
        cfg: &Config,
        query: Option<&str>,
    ) -> std::result::Result<AdmittedStream, ApiError> {
        if self.app.drain.is_draining() {
            return Err(ApiError::draining());
        }
        let header_id = session
            .req_header()
            .headers
            .get("last-event-id")
            .map(|v| v.as_bytes());
        let req = StreamRequest::parse(query, header_id, cfg.limits.max_channels_per_connection)?;
        let authenticator = self.app.auth.load_full();
        let caller = authenticator.identify_stream(session.req_header()).await?;
        let who = caller.who;
        auth::require_time_left(who.as_ref())?;
        auth::authorize_channels(cfg, who.as_ref(), Action::Subscribe, &req.channels)?;
        let user = who.as_ref().map(|p| &*p.name);
        let permit = self
            .app
            .limits
            .admit_stream(client_ip(session), user)
            .await?;
        if let Some(ticket) = caller.ticket {
            // Another request may have spent it meanwhile: then this one gives its place back.
            authenticator.spend_ticket(ticket).await?;
        }
        Ok((req, who, permit))
    }
}

/// A stream request that passed every check: what it asks, who asks, and its permit.
type AdmittedStream = (StreamRequest, Option<Principal>, StreamPermit);

/// The client's address, when the connection is TCP.
pub(crate) fn client_ip(session: &ServerSession) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// Longest request target (path and query) accepted: far above any real channel list, far below
/// what would make parsing it a cost.
const MAX_URI_BYTES: usize = 8 * 1024;
/// Most bytes of request header fields accepted (pingora itself stops at 1 MiB).
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// 414 for an over-long request target, 431 for over-large header fields.
fn request_size(req: &pingora::http::RequestHeader) -> std::result::Result<(), ApiError> {
    let uri = req.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        metrics::LIMIT_REJECTIONS
            .with_label_values(&["uri_size"])
            .inc();
        return Err(ApiError::new(
            414,
            "uri_too_long",
            format!("the request target is over {MAX_URI_BYTES} bytes"),
        ));
    }
    let headers: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        metrics::LIMIT_REJECTIONS
            .with_label_values(&["header_size"])
            .inc();
        return Err(ApiError::new(
            431,
            "headers_too_large",
            format!("the request header fields are over {MAX_HEADER_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// One debug line per refused request; the target with its credentials redacted.
fn refused(session: &ServerSession, e: &ApiError) {
    let req = session.req_header();
    let target = req.uri.path_and_query().map_or("", |pq| pq.as_str());
    tracing::debug!(
        method = %req.method,
        target = %auth::redact::target(target),
        status = e.status,
        code = e.code,
        "request refused"
    );
}

fn allow(method: &Method, allowed: &[Method]) -> std::result::Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        Err(ApiError::method_not_allowed(&names.join(", ")))
    }
}

/// Shares this node's `/stats` and first clients with the cluster every second, for
/// `?scope=cluster` (only with a shared broker).
struct Reporter {
    app: Arc<App>,
}

#[async_trait]
impl BackgroundService for Reporter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let report = admin::node_report(&self.app);
                    self.app.broker.report_node(&self.app.node_id, report).await;
                }
                _ = shutdown.changed() => return,
            }
        }
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

/// Connection read buffer: none. pingora reads a request head into its own buffer, and a stream
/// never reads a body, so an L4 read buffer (64 KiB by pingora's default) would only be idle
/// memory on every open stream.
const CONN_READ_BUFFER: usize = 0;
/// Connection write buffer (pingora's default, one TCP segment): lets a reply's header and body
/// leave in one write.
const CONN_WRITE_BUFFER: usize = 1460;

/// A configured, not yet running gateway.
pub struct Built {
    pub server: Server,
    pub app: Arc<App>,
    /// The address the listener binds (a concrete port even when the config said 0).
    pub listen: SocketAddr,
}

impl Built {
    /// Runs until SIGTERM/SIGINT has drained every stream; then the process exits 0.
    pub fn run(self) -> ! {
        let signals = SignalWatch {
            drain: self.app.drain.clone(),
            hub: self.app.hub.clone(),
            grace_period: self.app.grace_period,
        };
        self.server.run(RunArgs {
            shutdown_signal: Box::new(signals),
        });
        std::process::exit(0)
    }
}

/// Builds the pingora server for `config`: the HTTP service on `listen`, the sources and the
/// janitor.
pub fn build(config: Config) -> std::result::Result<Built, String> {
    metrics::init();
    let listen = resolve_listen(config.listen)?;
    let (app, replicator) = App::new(config)?;

    let conf = ServerConf {
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        // The drain happens in `SignalWatch` before pingora sees the signal; there is nothing left
        // for pingora's own (unconditional) grace sleep to wait for.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(Opt::default()), conf);
    server.bootstrap();

    let mut http = Service::new("gateway".to_string(), Gateway { app: app.clone() });
    http.add_listener(
        ListenerConfig::tcp(listen.to_string())
            .l4_buffer(L4BufferSettings::new(CONN_READ_BUFFER, CONN_WRITE_BUFFER)),
    );
    server.add_service(http);
    if let Some(replicator) = replicator {
        server.add_service(background_service("redis replicator", replicator));
        server.add_service(background_service(
            "cluster reporter",
            Reporter { app: app.clone() },
        ));
    }
    server.add_service(background_service(
        "sources",
        SourceService { app: app.clone() },
    ));
    server.add_service(background_service(
        "janitor",
        Janitor {
            hub: app.hub.clone(),
            limits: app.limits.clone(),
            tickets: app.tickets.clone(),
        },
    ));
    Ok(Built {
        server,
        app,
        listen,
    })
}

/// A concrete address for the listener: port 0 becomes a free port chosen now, so the address
/// can be printed (and read back by tests) before pingora binds it.
fn resolve_listen(addr: SocketAddr) -> std::result::Result<SocketAddr, String> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = TcpListener::bind(addr).map_err(|e| format!("cannot bind {addr}: {e}"))?;
    probe
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))
}
