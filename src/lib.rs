//! sse-gateway: a Server-Sent Events gateway and reverse proxy on pingora.
pub mod config;
