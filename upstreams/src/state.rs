//! What the server runs with, and the state every handler shares.

use std::sync::Arc;
use std::time::Duration;

use crate::host_metrics::MetricsHub;
use crate::notifications::NotificationHub;
use crate::sse::StreamControl;
use crate::stats::Stats;

/// What the server runs with (see [`crate::cli::Cli`] for each setting's meaning).
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    /// Zero: no generated notifications.
    pub notify_interval: Duration,
    pub history: usize,
    pub heartbeat: Duration,
    pub metrics_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: "up1".to_owned(),
            notify_interval: Duration::from_secs(5),
            history: 1000,
            heartbeat: Duration::from_secs(15),
            metrics_interval: Duration::from_secs(1),
        }
    }
}

/// Shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub notifications: Arc<NotificationHub>,
    pub metrics: Arc<MetricsHub>,
    pub stats: Arc<Stats>,
    pub control: Arc<StreamControl>,
}
