//! A Rust client for sse-gateway's `GET /events`: an async [`Stream`](futures_util::Stream) of
//! events that outlives its connections.
//!
//! It does what the gateway's TypeScript client does: reconnects with exponential backoff and
//! jitter, never sooner than the gateway's `retry:` or `Retry-After`; resumes with
//! `Last-Event-ID`, so no event is lost or repeated across a reconnect; yields
//! [`Message::Reset`] when the gateway could not resume (events were missed); fetches a fresh
//! connect ticket per connection when asked to; on `token_expired` asks the app for a new
//! credential, or ends with [`Error::TokenExpired`]; ends with [`Error::AccessRevoked`] when a
//! reload takes the stream's rights away, and with [`Error::Status`] on a 4xx that another try
//! cannot mend. [`Event::bytes`] decodes the data of a binary (`data_base64`) event.
//!
//! ```no_run
//! # async fn run() -> Result<(), sse_client::Error> {
//! use futures_util::StreamExt;
//! use sse_client::{Credential, Message, SseClient};
//!
//! let mut events = SseClient::new("http://127.0.0.1:8080/events")
//!     .channel("user.42.inbox")
//!     .credential(Credential::Bearer("<a JWT>".into()))
//!     .tickets(true)
//!     .on_token_expired(|| async { Some(Credential::Bearer("<a fresh JWT>".into())) })
//!     .stream()?;
//! while let Some(message) = events.next().await {
//!     match message? {
//!         Message::Event(e) if e.event == "file" => println!("{} bytes", e.bytes()?.len()),
//!         Message::Event(e) => println!("{} {}: {}", e.id, e.event, e.data),
//!         Message::Reset(r) => println!("missed events ({}): refetch the state", r.reason),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The SSE wire format is parsed with the workspace's strict WHATWG parser ([`sse_wire`]). For
//! `https://` URLs, enable a TLS feature of `reqwest` in your own `Cargo.toml` (features unify),
//! or pass a client of your own to [`SseClient::http_client`].
//!
//! # Layout
//! - [`client`](SseClient): what to subscribe to and how to connect;
//! - [`stream`](EventStream): the connection loop (connect, parse, reconnect, resume);
//! - [`event`](Message): what the stream yields;
//! - [`credential`](Credential): credentials in headers, and connect tickets;
//! - [`backoff`](Backoff): reconnect delays;
//! - [`error`](Error): what can go wrong, and what is worth another try.

mod backoff;
mod client;
mod credential;
mod error;
mod event;
mod stream;

pub use backoff::Backoff;
pub use client::SseClient;
pub use credential::Credential;
pub use error::Error;
pub use event::{Event, Message, Reset};
pub use stream::EventStream;
