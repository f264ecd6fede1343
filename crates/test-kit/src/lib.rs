//! What the tests of every package in the workspace share: programs run as real processes on
//! port 0 with their address read back from their `listening on` line, a strict SSE client over
//! real sockets, and waits that poll a condition up to a deadline, never a sleep that hopes.
//!
//! # Layout
//! - [`process`]: a program's process: its address, its stderr, signals, killed on drop.
//! - [`wait`]: [`eventually`], a condition polled up to a deadline.
//! - [`sse`]: [`SseClient`], an `EventSource` over a real HTTP connection.
//! - [`web`]: the HTTP client, raw requests, and the contract's JSON errors.
//! - [`ports`]: addresses that stay put: a [`Relay`] in front of a process that restarts, and a
//!   [`ClosedPort`] that refuses.
//! - [`metrics`]: one metric's value in Prometheus text.
//! - [`rate`]: a token bucket checked by its bounds, not by an exact sequence of answers.
//! - [`ids`]: the sequence number of an event id.
//!
//! Modules are not named after crates (no `http`), so that `use test_kit::*` hides none.
//!
//! The kit knows programs only by name: each package's tests keep their program's flags and
//! configuration, so nothing here depends on the gateway.

pub mod ids;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod rate;
pub mod sse;
pub mod wait;
pub mod web;

pub use ids::seq;
pub use metrics::metric_value;
pub use ports::{ClosedPort, Relay};
pub use process::Process;
pub use rate::{until_refused, BucketRun};
pub use sse::SseClient;
pub use wait::eventually;
pub use web::{error_code, http, raw_request, reply_status_and_code, response_status_and_code};
