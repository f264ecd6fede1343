//! sse-gateway: a Server-Sent Events gateway and reverse proxy on pingora.
//!
//! # Layout
//! In the order an event flows:
//! - [`source`]: upstream SSE streams relayed into channels, and [`publish`]: `POST /broadcast`,
//!   each turning events into [`broker::Draft`]s;
//! - [`broker`]: sequences events (in memory, or cluster-wide) and hands them to the hub;
//! - [`hub`]: channels, history, resume and fan-out to the streams' queues;
//! - [`stream`]: one client's SSE loop: replay, live events, heartbeats, lifetime, drain;
//! - [`sse`]: the wire format, encoded once per event.
//!
//! Beside them: [`config`] (the YAML file and its checked form), [`gateway`] (the pingora service
//! that routes every endpoint), [`auth`], [`limits`], [`cors`], [`admin`] (`/stats`, `/clients`),
//! [`static_files`] (the UI), [`metrics`], [`reply`] (the JSON error shape) and [`shutdown`]
//! (graceful drain).

pub mod admin;
pub mod auth;
pub mod broker;
pub mod config;
pub mod cors;
pub mod gateway;
pub mod hub;
pub mod limits;
pub mod metrics;
pub mod publish;
pub mod reply;
pub mod shutdown;
pub mod source;
pub use sse_wire as sse;
pub mod static_files;
pub mod stream;
