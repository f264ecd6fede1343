//! Brokers: where published events go before they reach the hub.
//!
//! The memory broker sequences events in this process. The Redis broker sequences them
//! cluster-wide and every node's hub takes them in from the cluster's log, so every event, local
//! or remote, enters the hub by the same path and is never delivered twice.

mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;

pub use memory::MemoryBroker;
pub use redis::{RedisBroker, Replicator};

use crate::hub::EventId;

/// An event to publish, validated.
#[derive(Debug, Clone)]
pub struct Draft {
    pub channels: Box<[Box<str>]>,
    pub event_type: Box<str>,
    /// The data as it will appear in `data:` lines.
    pub data: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Broker: Send + Sync {
    /// Publishes one event. When this returns `Ok`, the event is in history.
    async fn publish(&self, draft: Draft) -> Result<EventId, BrokerError>;

    /// `memory` or `redis`, for `/stats`.
    fn kind(&self) -> &'static str;

    /// Whether publishing can work now (for `/readyz`, `/stats` and metrics).
    fn is_up(&self) -> bool {
        true
    }
}

pub type SharedBroker = Arc<dyn Broker>;
