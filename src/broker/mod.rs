//! Brokers: where published events go before they reach the hub.
//!
//! The memory broker sequences events in this process. The Redis broker sequences them
//! cluster-wide and every node's hub takes them in from the cluster's log, so every event, local
//! or remote, enters the hub by the same path and is never delivered twice.

mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

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

/// How often a node renews its lease on a source it leads (and a standby node asks for it).
/// A lease lasts a few of these (see the Redis broker), so one lost renewal does not move it.
pub const SOURCE_LEASE_RENEW: Duration = Duration::from_millis(1500);

/// Where an event read from a source comes from: the shared broker fences it (only the node
/// leading the source may publish it) and keeps `upstream_id` as the source's resume point in
/// the same step, so a node that takes the source over resumes exactly after it.
#[derive(Debug, Clone)]
pub struct SourceMark<'a> {
    pub source: &'a str,
    pub upstream_id: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    /// Another node leads this source now; this node must stop reading it.
    #[error("another node leads this source")]
    NotLeader,
}

#[async_trait]
pub trait Broker: Send + Sync {
    /// Publishes one event. When this returns `Ok`, the event is in history.
    async fn publish(&self, draft: Draft) -> Result<EventId, BrokerError>;

    /// Publishes an event read from a source, if this node still leads it (see [`SourceMark`]).
    /// On one node there is nothing to coordinate: a plain publish.
    async fn publish_from_source(
        &self,
        draft: Draft,
        _mark: SourceMark<'_>,
    ) -> Result<EventId, BrokerError> {
        self.publish(draft).await
    }

    /// Takes or renews this node's lease on `source`: whether it leads the source now. Only
    /// the leader connects to the upstream, so a cluster holds one connection per source.
    async fn lead_source(&self, _source: &str) -> Result<bool, BrokerError> {
        Ok(true)
    }

    /// Gives the lease up (the source is no longer wanted here), so another node can take it at
    /// once rather than when it expires.
    async fn release_source(&self, _source: &str) {}

    /// The upstream id of the last event of `source` published cluster-wide: where a new leader
    /// resumes. `None` on one node (the relay remembers it itself).
    async fn source_resume_id(&self, _source: &str) -> Result<Option<String>, BrokerError> {
        Ok(None)
    }

    /// Takes one of `max` places of `key` (a client IP or user) in `scope` (`ip` | `user`)
    /// counted over every live node: whether there was one. On one node the node's own count is
    /// the whole count, so there is nothing to add.
    async fn hold_connection(
        &self,
        _scope: &str,
        _key: &str,
        _max: usize,
    ) -> Result<bool, BrokerError> {
        Ok(true)
    }

    /// Gives back a place taken by [`Broker::hold_connection`].
    async fn release_connection(&self, _scope: &str, _key: &str) {}

    /// Takes a token from the cluster-wide bucket `bucket` of `key`: `None` if there was one,
    /// else how long until there is. On one node the local bucket is the whole bucket.
    async fn take_token(
        &self,
        _bucket: &str,
        _key: &str,
        _rate: crate::config::RateLimit,
    ) -> Result<Option<Duration>, BrokerError> {
        Ok(None)
    }

    /// Shares this node's report (JSON: its `/stats` and first clients) with the cluster, for
    /// `?scope=cluster`. Nothing to share on one node.
    async fn report_node(&self, _node: &str, _report: String) {}

    /// The reports of every live node, this one's included; `None` on one node.
    async fn node_reports(&self) -> Result<Option<Vec<String>>, BrokerError> {
        Ok(None)
    }

    /// `memory` or `redis`, for `/stats`.
    fn kind(&self) -> &'static str;

    /// Whether publishing can work now (for `/readyz`, `/stats` and metrics).
    fn is_up(&self) -> bool {
        true
    }
}

pub type SharedBroker = Arc<dyn Broker>;

/// Values every node reads, each with an expiry and taken at most once: where connect tickets
/// live when the nodes share a broker, so a ticket issued by one node opens a stream on any.
/// Only a shared broker has one; on one node the tickets stay in the process
/// ([`crate::auth::TicketStore`]).
#[async_trait]
pub trait TicketVault: Send + Sync {
    /// Holds `value` under `id` for `ttl` (at least a millisecond).
    async fn put_ticket(&self, id: &str, value: &str, ttl: Duration) -> Result<(), BrokerError>;

    /// The value under `id`, unless it has expired or been taken.
    async fn peek_ticket(&self, id: &str) -> Result<Option<String>, BrokerError>;

    /// Removes `id`: whether this call is the one that removed it. Of any number of concurrent
    /// calls, on any nodes, at most one gets `true`.
    async fn take_ticket(&self, id: &str) -> Result<bool, BrokerError>;
}
