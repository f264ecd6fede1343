//! Upstream event sources: the gateway subscribes once to each upstream `text/event-stream` in
//! `sources:` and publishes what it reads into channels, for any number of clients, with the
//! gateway's own history and resume.
//!
//! # Layout
//! - this module: [`Sources`], which keeps one relay running per configured source and follows
//!   config reloads (sources added, removed or changed);
//! - `relay`: one task per source: demand, connect, parse, publish, back off, reconnect;
//! - `upstream`: opening the upstream stream with pingora's HTTP client;
//! - `backoff`: reconnect delays that honour the upstream's `retry:`;
//! - `status`: what each source is doing, for `/stats` and metrics.
//!
//! Events enter the hub through the broker like `POST /broadcast` ones, so they get the
//! gateway's ids and history; the upstream's ids are only used to resume the upstream.

mod backoff;
mod relay;
mod status;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::connectors::http::Connector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::runtime::Handle;
use tokio::sync::{watch, OnceCell};
use tokio::task::JoinHandle;

pub use status::{Phase, SourceStats, SourceStatus};

use crate::broker::SharedBroker;
use crate::config::{Config, SourceConfig};
use crate::drain::Drain;
use crate::hub::Hub;
use crate::proxy::Pools;
use relay::Relay;

/// What a relay uses: the hub (to see its audience), the broker (to publish, and to lead the
/// source in a cluster), the drain (to stop) and the upstream pools (a source given as
/// `upstream` + `path` connects to a healthy server of its pool).
#[derive(Clone)]
pub struct SourceContext {
    pub hub: Arc<Hub>,
    pub broker: SharedBroker,
    pub drain: Arc<Drain>,
    pub pools: Arc<Pools>,
}

/// How long a reload waits for a removed or changed source's relay to stop (it hands its lease
/// over on the way) before starting its replacement anyway.
const STOP_PATIENCE: Duration = Duration::from_secs(5);

/// The relays of the configured sources, one each, in config order.
pub struct Sources {
    ctx: SourceContext,
    /// Shared so relays share its connection setup (and TLS configuration).
    connector: Arc<Connector>,
    /// The runtime the relays run on (the sources service's), set when it starts: a reload
    /// applied from another service's runtime still starts relays here.
    runtime: OnceCell<Handle>,
    running: Mutex<Vec<Running>>,
    /// One reload applied at a time (the first config and a reload may race at startup).
    applying: tokio::sync::Mutex<()>,
}

/// One source's relay.
struct Running {
    cfg: SourceConfig,
    /// What else of the config the relay was built from (its upstream pool, the event size).
    built_from: RelayInputs,
    status: Arc<SourceStatus>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// The parts of the whole config a relay depends on besides its own entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RelayInputs {
    max_event_bytes: usize,
}

impl RelayInputs {
    fn of(_cfg: &SourceConfig, config: &Config) -> RelayInputs {
        // The pool of an `upstream` source is looked up at each connection, so its changes
        // need no restart.
        RelayInputs {
            max_event_bytes: config.limits.max_event_bytes,
        }
    }
}

impl Sources {
    pub fn new(ctx: SourceContext) -> Arc<Sources> {
        Arc::new(Sources {
            ctx,
            connector: Arc::new(Connector::new(None)),
            runtime: OnceCell::new(),
            running: Mutex::new(Vec::new()),
            applying: tokio::sync::Mutex::new(()),
        })
    }

    /// Every source's status, in config order (for `/stats`).
    pub fn statuses(&self) -> Vec<Arc<SourceStatus>> {
        self.running
            .lock()
            .iter()
            .map(|r| r.status.clone())
            .collect()
    }

    /// Makes the running relays match `config.sources`: unchanged sources keep running
    /// untouched; removed ones stop (handing their cluster lease over); changed ones stop and
    /// start again, resuming the upstream where they left off; new ones start.
    pub async fn apply(&self, config: &Config) {
        let _one_at_a_time = self.applying.lock().await;
        let mut stopping = Vec::new();
        let mut kept: Vec<Running> = Vec::new();
        {
            let mut running = self.running.lock();
            for old in running.drain(..) {
                let same = config
                    .sources
                    .iter()
                    .any(|cfg| *cfg == old.cfg && RelayInputs::of(cfg, config) == old.built_from);
                if same {
                    kept.push(old);
                } else {
                    stopping.push(old);
                }
            }
        }
        for old in &mut stopping {
            tracing::info!(source = %old.cfg.name, "source removed or changed by a reload; stopping it");
            old.stop.send_replace(true);
            if let Some(task) = old.task.take() {
                if tokio::time::timeout(STOP_PATIENCE, task).await.is_err() {
                    tracing::warn!(source = %old.cfg.name, "source did not stop in time");
                }
            }
        }
        let mut next = Vec::with_capacity(config.sources.len());
        for cfg in &config.sources {
            if let Some(at) = kept.iter().position(|r| r.cfg == *cfg) {
                next.push(kept.swap_remove(at));
                continue;
            }
            let status = Arc::new(SourceStatus::new(cfg));
            if let Some(old) = stopping
                .iter()
                .find(|old| old.cfg.name == cfg.name && old.cfg.target == cfg.target)
            {
                status.resume_from(&old.status);
            }
            next.push(self.start(cfg, config, status));
        }
        *self.running.lock() = next;
    }

    fn start(&self, cfg: &SourceConfig, config: &Config, status: Arc<SourceStatus>) -> Running {
        let (stop, stopped) = watch::channel(false);
        let relay = Relay::new(
            cfg.clone(),
            config,
            status.clone(),
            self.ctx.clone(),
            self.connector.clone(),
        );
        let task = match relay {
            Ok(relay) => {
                let run = relay.run(stopped);
                Some(match self.runtime.get() {
                    Some(runtime) => runtime.spawn(run),
                    None => tokio::spawn(run),
                })
            }
            Err(why) => {
                tracing::error!(source = %cfg.name, "source not started: {why}");
                status.set_phase(Phase::Stopped);
                None
            }
        };
        Running {
            cfg: cfg.clone(),
            built_from: RelayInputs::of(cfg, config),
            status,
            stop,
            task,
        }
    }
}

/// Runs the configured sources for the life of the gateway (a pingora background service).
pub struct SourceService {
    pub sources: Arc<Sources>,
    /// The config at start; reloads go through [`Sources::apply`].
    pub config: Arc<Config>,
}

#[async_trait]
impl BackgroundService for SourceService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = self.sources.runtime.set(Handle::current());
        self.sources.apply(&self.config).await;
        // Relays end by themselves when the drain starts; pingora's shutdown comes after it.
        let _ = shutdown.changed().await;
    }
}
