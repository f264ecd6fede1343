//! Operator endpoints: `/stats`, `/clients`, `DELETE /clients/{id}`, from a read-only view of
//! the node ([`NodeView`]).

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::broker::SharedBroker;
use crate::drain::Drain;
use crate::hub::{ClientInfo, CloseReason, Hub};
use crate::metrics;
use crate::proxy::{PoolStats, Pools};
use crate::reply::ApiError;
use crate::snapshot::Snapshots;
use crate::source::{SourceStats, Sources};

/// What the operator endpoints read: this node's parts, never changed through it (closing a
/// stream on request aside).
#[derive(Clone)]
pub struct NodeView {
    /// This process among the nodes of a cluster (host name, pid and a random part).
    pub node_id: String,
    pub started_at: SystemTime,
    pub hub: Arc<Hub>,
    pub broker: SharedBroker,
    pub drain: Arc<Drain>,
    pub sources: Arc<Sources>,
    pub snapshots: Arc<Snapshots>,
    pub pools: Arc<Pools>,
}

/// `GET /stats`.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub node: NodeStats,
    pub streams: StreamStats,
    pub channels: usize,
    pub history_events: usize,
    pub events: EventStats,
    /// One entry per configured source, in config order.
    pub sources: Vec<SourceStats>,
    /// One entry per upstream pool, by name: each server's health, ejection and requests in
    /// flight.
    pub upstreams: Vec<PoolStats>,
    pub config: ConfigStats,
}

/// The configuration in force.
#[derive(Debug, Serialize)]
pub struct ConfigStats {
    /// 1 for the config the node started with, one more per applied reload.
    pub generation: u64,
    /// When it was loaded (Unix seconds).
    pub loaded_at: u64,
    /// The file it came from (`null` for the embedded default).
    pub file: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NodeStats {
    /// Which node answered (host name, pid and a random part).
    pub id: String,
    /// The id sequence's epoch (the node's start, in Unix milliseconds, on the memory broker).
    pub epoch: u64,
    pub uptime_seconds: u64,
    pub broker: &'static str,
    /// Whether the broker can take events now (Redis reachable); always true for memory.
    pub broker_up: bool,
    pub draining: bool,
    /// The id of the last event taken in.
    pub last_event_id: String,
}

#[derive(Debug, Serialize)]
pub struct StreamStats {
    pub open: usize,
    pub opened_total: u64,
    pub slow_consumer_disconnects_total: u64,
}

#[derive(Debug, Serialize)]
pub struct EventStats {
    pub published_total: u64,
    pub delivered_total: u64,
    pub replayed_total: u64,
    pub resets_total: u64,
}

pub fn stats(app: &NodeView) -> Stats {
    let (channels, history_events) = app.hub.counts();
    let snapshot = app.snapshots.load();
    Stats {
        node: NodeStats {
            id: app.node_id.clone(),
            epoch: app.hub.epoch(),
            uptime_seconds: SystemTime::now()
                .duration_since(app.started_at)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            broker: app.broker.kind(),
            broker_up: app.broker.is_up(),
            draining: app.drain.is_draining(),
            last_event_id: format!("{}-{}", app.hub.epoch(), app.hub.last_seq()),
        },
        streams: StreamStats {
            open: app.hub.clients().len(),
            opened_total: metrics::STREAMS_OPENED.get(),
            slow_consumer_disconnects_total: metrics::SLOW_CONSUMERS.get(),
        },
        channels,
        history_events,
        events: EventStats {
            published_total: metrics::EVENTS_PUBLISHED.get(),
            delivered_total: metrics::EVENTS_DELIVERED.get(),
            replayed_total: metrics::REPLAYED_EVENTS.get(),
            resets_total: metrics::RESETS.get(),
        },
        sources: app
            .sources
            .statuses()
            .iter()
            .map(|s| s.snapshot())
            .collect(),
        upstreams: app.pools.stats(),
        config: ConfigStats {
            generation: snapshot.generation,
            loaded_at: unix_seconds(snapshot.loaded_at),
            file: snapshot
                .config
                .source
                .as_ref()
                .map(|p| p.display().to_string()),
        },
    }
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Largest page of `/clients`.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// `GET /clients?limit=&cursor=`.
#[derive(Debug, Serialize)]
pub struct ClientsPage {
    /// Which node answered: the page lists this node's streams.
    pub node: String,
    pub clients: Vec<ClientInfo>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    pub total: usize,
}

/// Which page of `/clients` a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageQuery {
    limit: usize,
    /// The last id of the previous page (0: from the start).
    after: u64,
}

/// Reads `?limit=` and `?cursor=`; 400 `invalid_limit` / `invalid_cursor` for values that are
/// not ours. Checked whatever the `scope`, so a bad value is refused rather than ignored.
pub fn page_query(query: Option<&str>) -> Result<PageQuery, ApiError> {
    let mut limit = DEFAULT_PAGE;
    let mut after = 0;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*key {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request("invalid_limit", format!("limit is 1..={MAX_PAGE}"))
                    })?
            }
            "cursor" => {
                after = value.parse().map_err(|_| {
                    ApiError::bad_request("invalid_cursor", "cursor is not one we gave")
                })?
            }
            _ => {}
        }
    }
    Ok(PageQuery { limit, after })
}

pub fn clients(app: &NodeView, PageQuery { limit, after }: PageQuery) -> ClientsPage {
    let (clients, next) = app.hub.clients().page(after, limit);
    ClientsPage {
        node: app.node_id.clone(),
        clients,
        next_cursor: next.map(|n| n.to_string()),
        total: app.hub.clients().len(),
    }
}

/// `DELETE /clients/{id}`: ends that stream (the client will reconnect and resume).
pub fn disconnect(app: &NodeView, id: &str) -> Result<(), ApiError> {
    let client = id
        .parse()
        .ok()
        .and_then(|id| app.hub.clients().get(id))
        .ok_or_else(|| ApiError::new(404, "client_not_found", "no connected client has this id"))?;
    client.close(CloseReason::Kicked);
    Ok(())
}

/// Streams of each node listed in `?scope=cluster` (the first, by id): the full list of a node
/// is paged on that node.
const CLUSTER_CLIENTS_PER_NODE: usize = 100;

/// Whether the query asks for `scope=cluster` (`scope=node`, the default, is this node alone).
pub fn cluster_scope(query: Option<&str>) -> Result<bool, ApiError> {
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == "scope" {
            return match &*value {
                "cluster" => Ok(true),
                "node" => Ok(false),
                _ => Err(ApiError::bad_request(
                    "invalid_scope",
                    "scope is node (the default) or cluster",
                )),
            };
        }
    }
    Ok(false)
}

/// What a node shares with the cluster every second: its stats and its first streams.
#[derive(Debug, Serialize)]
struct NodeReport {
    stats: Stats,
    clients: Vec<ClientInfo>,
    clients_total: usize,
}

/// This node's report, as JSON.
pub fn node_report(app: &NodeView) -> String {
    let (clients, _) = app.hub.clients().page(0, CLUSTER_CLIENTS_PER_NODE);
    let report = NodeReport {
        stats: stats(app),
        clients,
        clients_total: app.hub.clients().len(),
    };
    serde_json::to_string(&report).unwrap_or_default()
}

/// Every live node's report (this node's own, fresh, on a single node).
async fn reports(app: &NodeView) -> Result<Vec<serde_json::Value>, ApiError> {
    let shared = app
        .broker
        .node_reports()
        .await
        .map_err(|e| ApiError::broker_unavailable(e.to_string()))?;
    let own = || node_report(app);
    let texts = shared.unwrap_or_else(|| vec![own()]);
    Ok(texts
        .iter()
        .filter_map(|text| serde_json::from_str(text).ok())
        .collect())
}

fn sum(reports: &[serde_json::Value], path: &[&str]) -> u64 {
    reports
        .iter()
        .map(|r| path.iter().fold(r, |v, key| &v[key]).as_u64().unwrap_or(0))
        .sum()
}

/// `GET /stats?scope=cluster`: every node's stats (as each reported within the last seconds)
/// and their totals.
pub async fn cluster_stats(app: &NodeView) -> Result<serde_json::Value, ApiError> {
    let reports = reports(app).await?;
    let totals = serde_json::json!({
        "nodes": reports.len(),
        "streams_open": sum(&reports, &["stats", "streams", "open"]),
        "events_published_total": sum(&reports, &["stats", "events", "published_total"]),
        "events_delivered_total": sum(&reports, &["stats", "events", "delivered_total"]),
    });
    let nodes: Vec<&serde_json::Value> = reports.iter().map(|r| &r["stats"]).collect();
    Ok(serde_json::json!({
        "scope": "cluster",
        "answered_by": app.node_id,
        "totals": totals,
        "nodes": nodes,
    }))
}

/// `GET /clients?scope=cluster`: each node's stream count and first streams.
pub async fn cluster_clients(app: &NodeView) -> Result<serde_json::Value, ApiError> {
    let reports = reports(app).await?;
    let nodes: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "node": r["stats"]["node"]["id"],
                "total": r["clients_total"],
                "clients": r["clients"],
            })
        })
        .collect();
    Ok(serde_json::json!({
        "scope": "cluster",
        "answered_by": app.node_id,
        "total": sum(&reports, &["clients_total"]),
        "nodes": nodes,
    }))
}
