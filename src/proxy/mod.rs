//! The reverse proxy: `routes:` to `upstreams:` pools, through pingora's proxy.
//!
//! # Layout
//! - `routes`: the route table, which request goes where (part of the config snapshot);
//! - `pool`: a pool's balancer (pingora-load-balancing) and the registry that keeps unchanged
//!   pools across reloads;
//! - `servers`: each server's state (in flight, passive ejection, health), which the balancer,
//!   the checks and the proxy share;
//! - `least_connections`: the selection pingora lacks;
//! - `health`: active checks with the pool's settings;
//! - `forwarded`: the client address and the `X-Forwarded-*` headers;
//! - `framing`: an upstream response body's framing, for the relay of event streams;
//! - `tls`: the CA of upstream HTTPS.
//!
//! The front ([`crate::front`]) answers the gateway's own endpoints and hands the rest to the
//! route table; the proxying itself is pingora's (no buffering of event streams, upgrades
//! passed through, the upstream request closed when the client leaves).

pub mod forwarded;
pub(crate) mod framing;
mod health;
mod least_connections;
mod pool;
mod routes;
mod servers;
pub mod tls;

use std::sync::Arc;

pub use pool::{HashInput, Pool, PoolStats, Pools, Selected};
pub use routes::{Route, RouteTable};
pub use servers::ServerState;

use crate::config::Config;

/// The route table of `config`, over the pools of `pools` (unchanged pools kept, with their
/// health); `previous` is the table in force, whose unchanged rate buckets carry over.
pub fn route_table(
    config: &Config,
    pools: &Pools,
    previous: Option<&RouteTable>,
) -> Result<Arc<RouteTable>, String> {
    let pools = pools.update(&config.upstreams)?;
    Ok(Arc::new(RouteTable::build(config, &pools, previous)))
}
