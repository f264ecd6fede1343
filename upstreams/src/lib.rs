//! `reference-upstream`: a small SSE origin for testing and demonstrating the gateway.
//!
//! It serves a `notification` stream with its own bounded history and `Last-Event-ID`
//! replay, a live `metrics` stream about the host (from `/proc`), a JSON API to publish
//! notifications and to inspect what it has seen (open streams, forwarding headers), and a
//! fault hook that drops every open stream. See the crate README for the wire formats.

pub mod app;
pub mod cli;
pub mod error;
pub mod host_metrics;
pub mod info;
pub mod json_body;
pub mod notifications;
pub mod publish;
pub mod sse;
pub mod state;
pub mod stats;
pub mod streams;

pub use app::Server;
pub use state::Config;
