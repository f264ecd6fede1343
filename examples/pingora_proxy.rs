//! The least a pingora proxy does per request, for `loadtest/run --proxy`: pingora 0.9.1's own
//! `HttpProxy` with a `ProxyHttp` that only picks the upstream by path (`/sub/` to the event
//! stream server, anything else to the backend), on as many worker threads as the gateway. It
//! runs beside the gateway, nginx and HAProxy in the same rounds, so what the gateway costs over
//! the proxy it is built on is a ratio measured in one run. Not a product: no config, no limits.
//!
//! It also answers `POST /broadcast` itself: it reads the body and replies 202 with a small JSON
//! body, as the gateway does, but with nothing else (no parsing, no auth, no history). That is the
//! least any publish endpoint built on pingora's `HttpProxy` does, for `loadtest/run --perf`'s k6
//! publish runs.
//!
//! `pingora_proxy LISTEN BACKEND SSE` (three `host:port`) prints
//! `pingora_proxy listening on http://LISTEN` and serves until killed.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

struct ByPath {
    backend: SocketAddr,
    sse: SocketAddr,
}

#[async_trait]
impl ProxyHttp for ByPath {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _: &mut ()) -> Result<bool> {
        let req = session.req_header();
        if req.method != http::Method::POST || req.uri.path() != "/broadcast" {
            return Ok(false);
        }
        while session.read_request_body().await?.is_some() {}
        let body = bytes::Bytes::from_static(br#"{"id":"1","channels":["bench"]}"#);
        let mut resp = ResponseHeader::build(202, Some(2))?;
        resp.insert_header("content-type", "application/json")?;
        resp.insert_header("content-length", body.len().to_string())?;
        session.write_response_header(Box::new(resp), false).await?;
        session.write_response_body(Some(body), true).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, session: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        let to = if session.req_header().uri.path().starts_with("/sub/") {
            self.sse
        } else {
            self.backend
        };
        Ok(Box::new(HttpPeer::new(to, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addrs: Vec<SocketAddr> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let [listen, backend, sse] = addrs[..] else {
        eprintln!("usage: pingora_proxy LISTEN BACKEND SSE (each host:port)");
        std::process::exit(2);
    };
    let conf = ServerConf {
        // As the gateway: one worker thread per core.
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        // Stopped between rounds: no grace period to sit out.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, ByPath { backend, sse });
    proxy.add_tcp(&listen.to_string());
    server.add_service(proxy);
    println!("pingora_proxy listening on http://{listen}");
    server.run_forever();
}
