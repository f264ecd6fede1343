//! Wiring: the router over the shared state, and a [`Server`] that runs it on a bound listener
//! until told to stop. Tests run the same [`Server`] in-process.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error;
use crate::host_metrics::{self, MetricsHub};
use crate::info;
use crate::json_body::MAX_BODY_BYTES;
use crate::notifications::{self, NotificationHub};
use crate::publish;
use crate::sse::StreamControl;
use crate::state::{AppState, Config};
use crate::stats::Stats;
use crate::streams;

/// The routes; unknown paths get a JSON 404, known paths with another method a JSON 405.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/streams/notifications", get(streams::notifications))
        .route("/streams/metrics", get(streams::metrics))
        .route("/streams/disconnect", post(streams::disconnect))
        .route("/notifications", post(publish::create))
        .route("/api/info", get(info::info))
        .route("/healthz", get(info::healthz))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .with_state(state)
}

async fn count_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    state.stats.count_request();
    next.run(request).await
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<io::Result<()>>,
    notifications: Arc<NotificationHub>,
}

impl Server {
    /// Starts serving on `listener`, with the periodic notifier and the metrics sampler.
    pub fn start(listener: TcpListener, config: Config) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let boot_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let stop = CancellationToken::new();
        let state = AppState {
            notifications: Arc::new(NotificationHub::new(boot_ms, config.history)),
            metrics: Arc::new(MetricsHub::new(boot_ms)),
            stats: Arc::new(Stats::default()),
            control: Arc::new(StreamControl::new(stop.clone())),
            config: Arc::new(config),
        };
        tokio::spawn(notifications::run_periodic(
            Arc::clone(&state.notifications),
            state.config.notify_interval,
            stop.clone(),
        ));
        tokio::spawn(host_metrics::run_sampler(
            Arc::clone(&state.metrics),
            Arc::clone(&state.stats),
            state.config.metrics_interval,
            stop.clone(),
        ));
        let notifications = Arc::clone(&state.notifications);
        let app = router(state);
        // Cancelling `stop` ends every open stream (they watch child tokens of it), so
        // axum's graceful shutdown does not wait on them.
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        });
        Ok(Self {
            addr,
            stop,
            task,
            notifications,
        })
    }

    /// The bound address (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The notification hub, for tests that publish or inspect history directly.
    pub fn notifications(&self) -> &Arc<NotificationHub> {
        &self.notifications
    }

    /// Ends every stream, stops accepting, and waits for open requests to finish.
    pub async fn shutdown(self) -> io::Result<()> {
        self.stop.cancel();
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(io::Error::other(e)),
        }
    }
}
