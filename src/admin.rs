//! Operator endpoints: `/stats`, `/clients`, `DELETE /clients/{id}`.

use std::time::SystemTime;

use serde::Serialize;

use crate::gateway::App;
use crate::hub::{ClientInfo, CloseReason};
use crate::metrics;
use crate::reply::ApiError;
use crate::source::SourceStats;

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
}

#[derive(Debug, Serialize)]
pub struct NodeStats {
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

pub fn stats(app: &App) -> Stats {
    let (channels, history_events) = app.hub.counts();
    Stats {
        node: NodeStats {
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
        sources: app.sources.iter().map(|s| s.snapshot()).collect(),
    }
}

/// Largest page of `/clients`.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// `GET /clients?limit=&cursor=`.
#[derive(Debug, Serialize)]
pub struct ClientsPage {
    pub clients: Vec<ClientInfo>,
    /// Pass as `?cursor=` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    pub total: usize,
}

pub fn clients(app: &App, query: Option<&str>) -> Result<ClientsPage, ApiError> {
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
    let (clients, next) = app.hub.clients().page(after, limit);
    Ok(ClientsPage {
        clients,
        next_cursor: next.map(|n| n.to_string()),
        total: app.hub.clients().len(),
    })
}

/// `DELETE /clients/{id}`: ends that stream (the client will reconnect and resume).
pub fn disconnect(app: &App, id: &str) -> Result<(), ApiError> {
    let client = id
        .parse()
        .ok()
        .and_then(|id| app.hub.clients().get(id))
        .ok_or_else(|| ApiError::new(404, "client_not_found", "no connected client has this id"))?;
    client.close(CloseReason::Kicked);
    Ok(())
}
