//! Active health checks of a pool: pingora's HTTP check with the pool's `health_check`
//! settings, and an observer that keeps each server's verdict for `/stats` and
//! `sse_gateway_upstream_healthy`.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, HealthObserve, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::protocols::tls::CaType;

use super::servers::ServerTable;
use crate::config::{HealthCheckConfig, UpstreamConfig};
use crate::metrics;

/// Records a server's health when a check changes it.
pub struct Observer {
    upstream: String,
    servers: Arc<ServerTable>,
}

impl Observer {
    pub fn new(upstream: &str, servers: Arc<ServerTable>) -> Observer {
        Observer {
            upstream: upstream.to_owned(),
            servers,
        }
    }
}

#[async_trait]
impl HealthObserve for Observer {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let Some(server) = self.servers.get(&target.addr) else {
            return;
        };
        server.set_healthy(healthy);
        metrics::UPSTREAM_HEALTHY
            .with_label_values(&[&self.upstream, server.label()])
            .set(i64::from(healthy));
        if healthy {
            tracing::info!(upstream = %self.upstream, server = %server.label(), "upstream server healthy again");
        } else {
            tracing::warn!(upstream = %self.upstream, server = %server.label(), "upstream server failed its health check");
        }
    }
}

/// `GET path` on each server within `timeout`; any 2xx passes. `healthy_after` passes in a row
/// bring a server back, `unhealthy_after` failures in a row take it out.
pub fn http_check(
    upstream: &UpstreamConfig,
    check: &HealthCheckConfig,
    observer: Observer,
    ca: Option<Arc<CaType>>,
) -> Box<dyn HealthCheck + Send + Sync> {
    let host = upstream.sni.clone().unwrap_or_else(|| {
        upstream
            .servers
            .first()
            .map_or_else(String::new, |s| s.addr.clone())
    });
    let mut probe = HttpHealthCheck::new(&host, upstream.tls);
    // The path was checked to be an origin-form path, which a URI always accepts.
    if let Ok(uri) = check.path.parse() {
        probe.req.set_uri(uri);
    }
    probe.consecutive_success = check.healthy_after;
    probe.consecutive_failure = check.unhealthy_after;
    probe.peer_template.options.connection_timeout = Some(check.timeout);
    probe.peer_template.options.total_connection_timeout = Some(check.timeout);
    probe.peer_template.options.read_timeout = Some(check.timeout);
    probe.peer_template.options.ca = ca;
    probe.validator = Some(Box::new(|response| {
        if response.status.is_success() {
            Ok(())
        } else {
            pingora::Error::e_explain(
                pingora::ErrorType::CustomCode("unhealthy", response.status.as_u16()),
                "health check answered outside 2xx",
            )
        }
    }));
    probe.health_changed_callback = Some(Box::new(observer));
    Box::new(probe)
}
