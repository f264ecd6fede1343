//! sse-gateway: a Server-Sent Events gateway and reverse proxy on pingora.
//!
//! # Layout
//! In the order an event flows:
//! - [`source`]: upstream SSE streams relayed into channels, and [`publish`]: `POST /broadcast`,
//!   each turning events into [`broker::Draft`]s;
//! - [`broker`]: sequences events (in memory, or cluster-wide) and hands them to the hub;
//! - [`hub`]: channels, history, resume and fan-out to the streams' queues;
//! - [`stream`]: one client's SSE loop: replay, live events, heartbeats, lifetime, drain;
//! - [`sse`]: the wire format, encoded once per event;
//! - [`proxy`]: the other half of the front: routes to upstream pools (balancing, health).
//!
//! Beside them: [`config`] (the YAML file and its checked form), [`snapshot`] (the config in
//! force and what derives from it, swapped whole) and [`reload`] (the file watcher and SIGHUP),
//! [`front`] (the pingora HTTP front that routes every endpoint to its handler group), [`auth`],
//! [`limits`], [`cors`], [`admin`] (`/stats`, `/clients`), [`static_files`] (the UI),
//! [`metrics`], [`tls`] (the HTTPS listener's certificate), [`reply`] (the JSON error shape),
//! [`drain`] (the shutdown flag every part reads) and [`shutdown`] (signals: drain, hand-over,
//! reload). [`server`] wires them into one pingora server; it alone sees every part.

pub mod admin;
pub mod auth;
pub mod broker;
pub mod config;
pub mod cors;
pub mod drain;
pub mod front;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod publish;
pub mod reload;
pub mod reply;
pub mod server;
pub mod shutdown;
pub mod snapshot;
pub mod source;
pub use sse_wire as sse;
pub mod static_files;
pub mod stream;
pub mod tls;
