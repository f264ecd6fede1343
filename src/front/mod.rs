//! The HTTP front: one pingora `HttpServerApp` on the listener that reads each request head,
//! routes it ([`router`]) to the handler group that answers it, and hands streams off to tasks
//! of their own (see [`crate::stream::open`]).
//!
//! # Layout
//! - this module: [`Front`], the connection's life (head timeout, keep-alive, hand-off);
//! - `gateway`: [`Gateway`], what the handlers share;
//! - `router`: which handler answers a request; the CORS check and the size limits before it;
//! - one file per handler group: `events` (`GET /events` admission), `publish`
//!   (`POST /broadcast`), `tickets` (`POST /tickets`), `admin` (`/stats`, `/clients`),
//!   `health` (`/healthz`, `/readyz`, `/metrics`) and the static UI in [`crate::static_files`];
//! - `request`: what every handler reads off a request (method rules, client address).

mod admin;
mod events;
mod gateway;
mod health;
mod publish;
mod request;
mod router;
mod tickets;

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;

pub use gateway::Gateway;
pub use request::client_ip;

use crate::metrics;
use crate::stream;

/// The gateway's HTTP application: answers every endpoint itself. pingora's `ServeHttp` would
/// buffer whole responses, and its proxy path keeps a large per-request future alive for as long
/// as a stream lasts; this app hands streams off instead (see [`stream::open`]).
pub struct Front {
    pub gateway: Gateway,
}

/// How long an idle keep-alive connection may wait for its next request.
const KEEPALIVE_SECONDS: u64 = 60;

#[async_trait]
impl HttpServerApp for Front {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // The whole request head must arrive within `header_read_timeout`: pingora's own read
        // timeout restarts with every byte, which a slowloris client exploits.
        let gateway = &self.gateway;
        let header_timeout = gateway.snapshots.load().config.limits.header_read_timeout;
        match tokio::time::timeout(header_timeout, session.read_request()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return None,
            Ok(Err(e)) => {
                // Only the kind: pingora's message quotes the raw request head, which can hold
                // credentials (`Authorization`, cookies, `?access_token=`).
                tracing::debug!(error = e.etype().as_str(), "unreadable request");
                return None;
            }
            Err(_) => {
                metrics::LIMIT_REJECTIONS
                    .with_label_values(&["header_timeout"])
                    .inc();
                tracing::debug!(
                    ?header_timeout,
                    "request head not complete in time; closing"
                );
                return None;
            }
        }
        session.set_keepalive(if *shutdown.borrow() {
            None
        } else {
            Some(KEEPALIVE_SECONDS)
        });
        match router::handle(gateway, &mut session).await {
            None => {
                let settings = HttpPersistentSettings::for_session(&session);
                match session.finish().await {
                    Ok(reusable) => {
                        reusable.map(|s| ReusedHttpStream::from_reusable_stream(s, settings))
                    }
                    Err(_) => None,
                }
            }
            Some(admitted) => {
                stream::open(session, &gateway.streams, *admitted).await;
                None
            }
        }
    }
}
