//! What the handlers share: the config in force and the parts a request may use.

use std::sync::Arc;

use bytes::Bytes;
use pingora::connectors::TransportConnector;

use crate::admin::NodeView;
use crate::broker::SharedBroker;
use crate::drain::Drain;
use crate::limits::Limits;
use crate::snapshot::Snapshots;
use crate::stream::StreamContext;

/// The parts of the node a request may use (built by the wiring).
pub struct Gateway {
    /// The config in force and what derives from it; loaded once per request.
    pub snapshots: Arc<Snapshots>,
    pub broker: SharedBroker,
    pub limits: Arc<Limits>,
    pub drain: Arc<Drain>,
    /// What streams are opened with.
    pub streams: StreamContext,
    /// What the operator endpoints read.
    pub node: NodeView,
    /// Connections to upstream servers for the event streams of routes, which are proxied off
    /// pingora's proxy (see `relay`); every other proxied request uses pingora's.
    pub upstreams: TransportConnector,
    /// `GET /openapi.json`, converted once at startup (see [`super::openapi_document`]).
    pub openapi: Bytes,
}
