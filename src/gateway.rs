//! The HTTP front: one pingora proxy service whose `request_filter` answers every gateway
//! endpoint itself (streams included: pingora's `ServeHttp` would buffer a whole response), and
//! the wiring that builds the pingora `Server` from a [`Config`].

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use http::Method;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::prelude::*;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

use crate::admin;
use crate::auth::{self, Authenticator};
use crate::broker::{MemoryBroker, SharedBroker};
use crate::config::{BrokerConfig, Config};
use crate::cors;
use crate::hub::Hub;
use crate::metrics;
use crate::publish;
use crate::reply::{self, ApiError, CommonHeaders};
use crate::shutdown::{Drain, SignalWatch};
use crate::static_files;
use crate::stream::{self, StreamRequest, StreamSettings};

/// Everything the request handlers share.
pub struct App {
    pub config: ArcSwap<Config>,
    pub auth: ArcSwap<Authenticator>,
    pub hub: Arc<Hub>,
    pub broker: SharedBroker,
    pub drain: Arc<Drain>,
    pub grace_period: Duration,
    pub started_at: SystemTime,
    /// Streams open on this node, for `limits.max_connections`.
    streams: AtomicUsize,
}

impl App {
    pub fn new(config: Config) -> Result<Arc<App>, String> {
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let rules = config.clone();
        let hub = Hub::new(epoch, move |channel| rules.history_for(channel));
        let broker: SharedBroker = match &config.broker {
            BrokerConfig::Memory => Arc::new(MemoryBroker::new(hub.clone())),
            BrokerConfig::Redis { .. } => {
                return Err("broker.kind redis is not available in this build yet".into())
            }
        };
        Ok(Arc::new(App {
            auth: ArcSwap::from_pointee(Authenticator::new(&config.auth)),
            grace_period: config.shutdown.grace_period,
            config: ArcSwap::from_pointee(config),
            hub,
            broker,
            drain: Arc::new(Drain::default()),
            started_at: SystemTime::now(),
            streams: AtomicUsize::new(0),
        }))
    }

    /// Takes a stream slot, or `None` at `limits.max_connections`.
    fn stream_slot(self: &Arc<Self>, max: usize) -> Option<StreamSlot> {
        let prev = self.streams.fetch_add(1, Ordering::AcqRel);
        let slot = StreamSlot(self.clone());
        (prev < max).then_some(slot)
    }
}

/// One of `limits.max_connections`; given back on drop.
struct StreamSlot(Arc<App>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The pingora proxy logic. Every request is answered in `request_filter`.
pub struct Gateway {
    app: Arc<App>,
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        let cfg = self.app.config.load_full();
        let origin = session.req_header().headers.get(http::header::ORIGIN);
        let outcome = match cors::check(&cfg.cors, origin.map(|v| v.as_bytes())) {
            Ok(common) => match self.route(session, &cfg, &common).await {
                Ok(()) => Ok(()),
                Err(e) => reply::error(session, &common, &e).await,
            },
            Err(e) => reply::error(session, &CommonHeaders::default(), &e).await,
        };
        if let Err(e) = outcome {
            tracing::debug!(error = %e, "reply not fully written; client gone");
        }
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // Unreachable: request_filter answers every request (routes to upstream pools come later).
        Err(Error::explain(HTTPStatus(404), "no route"))
    }
}

impl Gateway {
    async fn route(
        &self,
        session: &mut Session,
        cfg: &Config,
        common: &CommonHeaders,
    ) -> std::result::Result<(), ApiError> {
        let app = &self.app;
        let method = session.req_header().method.clone();
        let uri = session.req_header().uri.clone();
        let path = uri.path();
        let query = uri.query();
        let sent = |r: Result<()>| {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reply not fully written; client gone");
            }
            Ok(())
        };

        if method == Method::OPTIONS {
            let headers = cors::preflight_headers();
            return sent(reply::send(session, common, 204, "", &headers, Bytes::new()).await);
        }

        if path == cfg.sse.path {
            allow(&method, &[Method::GET])?;
            return self.open_stream(session, cfg, common, query).await;
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
                let status = serde_json::json!({"status": "ready"});
                sent(reply::json(session, common, 200, &status).await)
            }
            "/stats" => {
                allow(&method, &[Method::GET])?;
                self.require_admin(session)?;
                sent(reply::json(session, common, 200, &admin::stats(app)).await)
            }
            "/clients" => {
                allow(&method, &[Method::GET])?;
                self.require_admin(session)?;
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
                sent(reply::send(session, common, 200, file.content_type, &headers, file.body.into()).await)
            }
        }
    }

    fn require_admin(&self, session: &Session) -> std::result::Result<(), ApiError> {
        let who = self.app.auth.load().identify(session.req_header())?;
        auth::require_admin(who.as_ref())
    }

    async fn publish(
        &self,
        session: &mut Session,
        cfg: &Config,
    ) -> std::result::Result<publish::Accepted, ApiError> {
        if self.app.drain.is_draining() {
            return Err(ApiError::draining());
        }
        let who = self.app.auth.load().identify(session.req_header())?;
        publish::require_json(session)?;
        let body = publish::read_body(session, cfg.limits.max_event_bytes).await?;
        let draft = publish::parse(&body, cfg)?;
        publish::authorize(cfg, who.as_ref(), &draft)?;
        let channels = draft.channels.iter().map(|c| c.to_string()).collect();
        let id = self.app.broker.publish(draft).await.map_err(|e| {
            ApiError::new(503, "broker_unavailable", e.to_string()).retry_after(1)
        })?;
        Ok(publish::Accepted {
            id: id.to_string(),
            channels,
        })
    }

    async fn open_stream(
        &self,
        session: &mut Session,
        cfg: &Config,
        common: &CommonHeaders,
        query: Option<&str>,
    ) -> std::result::Result<(), ApiError> {
        if self.app.drain.is_draining() {
            return Err(ApiError::draining());
        }
        let header_id = session
            .req_header()
            .headers
            .get("last-event-id")
            .map(|v| v.as_bytes());
        let req = StreamRequest::parse(query, header_id, cfg.limits.max_channels_per_connection)?;
        let who = self.app.auth.load().identify(session.req_header())?;
        stream::authorize(cfg, who.as_ref(), &req.channels)?;
        let Some(_slot) = self.app.stream_slot(cfg.limits.max_connections) else {
            return Err(ApiError::new(
                503,
                "at_capacity",
                "this node holds its maximum number of streams",
            )
            .retry_after(5));
        };
        let settings = StreamSettings::from_config(cfg);
        let _ = stream::run(session, &self.app, common, req, who, settings).await;
        Ok(())
    }
}

fn allow(method: &Method, allowed: &[Method]) -> std::result::Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        Err(ApiError::method_not_allowed(&names.join(", ")))
    }
}

/// Periodic upkeep: ages out history and forgets idle channels, and refreshes the gauges.
struct Janitor {
    hub: Arc<Hub>,
}

#[async_trait]
impl BackgroundService for Janitor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Hub::SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.hub.sweep();
                    let (channels, events) = self.hub.counts();
                    metrics::CHANNELS.set(channels as i64);
                    metrics::HISTORY_EVENTS.set(events as i64);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Read buffer per connection. Stream requests are small and a stream never reads a body, so the
/// 64 KiB pingora default would be idle memory on every open stream; larger request heads and
/// bodies are still read, just in more reads.
const CONN_READ_BUFFER: usize = 4 * 1024;
/// Write buffer per connection (pingora's default, one TCP segment).
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

/// Builds the pingora server for `config`: the HTTP service on `listen` and the janitor.
pub fn build(config: Config) -> std::result::Result<Built, String> {
    metrics::init();
    let listen = resolve_listen(config.listen)?;
    let app = App::new(config)?;

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

    let mut http = http_proxy_service(&server.configuration, Gateway { app: app.clone() });
    http.add_listener(
        ListenerConfig::tcp(listen.to_string())
            .l4_buffer(L4BufferSettings::new(CONN_READ_BUFFER, CONN_WRITE_BUFFER)),
    );
    server.add_service(http);
    server.add_service(background_service("janitor", Janitor { hub: app.hub.clone() }));
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
