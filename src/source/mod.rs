//! Upstream event sources: the gateway subscribes once to each upstream `text/event-stream` in
//! `sources:` and publishes what it reads into channels, for any number of clients, with the
//! gateway's own history and resume.
//!
//! # Layout
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

use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::task::JoinSet;

pub use status::{Phase, SourceStats, SourceStatus};

use crate::gateway::App;
use relay::Relay;

/// Runs every source's relay for the life of the gateway (a pingora background service).
pub struct SourceService {
    pub app: Arc<App>,
}

#[async_trait]
impl BackgroundService for SourceService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let config = self.app.config.load_full();
        // Shared so relays share its connection setup (and TLS configuration).
        let connector = Arc::new(Connector::new(None));
        let mut relays = JoinSet::new();
        for (source, status) in config.sources.iter().zip(&self.app.sources) {
            let relay = Relay::new(
                source.clone(),
                &config,
                status.clone(),
                self.app.clone(),
                connector.clone(),
            );
            match relay {
                Ok(relay) => {
                    relays.spawn(relay.run());
                }
                Err(why) => {
                    tracing::error!(source = %source.name, "source not started: {why}");
                    status.set_phase(Phase::Stopped);
                }
            }
        }
        // Relays end by themselves when the drain starts; pingora's shutdown comes after it.
        tokio::select! {
            _ = async { while relays.join_next().await.is_some() {} } => {}
            _ = shutdown.changed() => {}
        }
    }
}
