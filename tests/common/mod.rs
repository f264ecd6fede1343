//! The gateway's side of the test kit: a real gateway process on a free port, configured by
//! [`base_config`], and the upstreams that source tests feed it from. What every package's tests
//! share (processes, the SSE client, `eventually`, JSON errors, metrics) is the `test-kit`
//! crate, re-exported here.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

pub mod redis;
mod upstream;
use test_kit::process::STARTUP;
#[allow(unused_imports)] // each test file uses some of these
pub use test_kit::{
    error_code, eventually, http, metric_value, raw_request, reply_status_and_code,
    response_status_and_code, seq, until_refused, BucketRun, ClosedPort, Process, Relay, SseClient,
};
#[allow(unused_imports)] // only the source tests use these
pub use upstream::*;

/// The admin/publish key every test gateway is configured with.
pub const KEY: &str = "test-key-0123456789";
/// A key that may publish on `limited.*` only and is no admin.
pub const LIMITED_KEY: &str = "limited-key-9876543210";
/// The HS256 secret in `TEST_JWT_SECRET` of every test gateway, for configs that set
/// `auth.jwt.secret_env: TEST_JWT_SECRET`.
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789-abcdefghijklmnop";

/// The base config of test gateways, with `extra` added. A top-level key in `extra` replaces
/// the base's section of that key (YAML forbids duplicate keys).
pub fn base_config(extra: &str) -> String {
    const BASE: &[(&str, &str)] = &[
        ("listen", "listen: 127.0.0.1:0\n"),
        ("static_dir", "static_dir: null\n"),
        (
            "channels",
            "channels:\n  - name: \"secret.*\"\n    subscribe: claims\n  - name: \"*\"\n    subscribe: public\n",
        ),
        (
            "auth",
            "auth:\n  api_keys:\n    - name: admin\n      key_env: TEST_ADMIN_KEY\n      publish: [\"*\"]\n      admin: true\n    - name: limited\n      key_env: TEST_LIMITED_KEY\n      publish: [\"limited.*\"]\n",
        ),
        (
            "cors",
            "cors:\n  allowed_origins: [\"http://app.test\"]\n  allow_credentials: true\n",
        ),
        ("shutdown", "shutdown:\n  grace_period: 2s\n"),
    ];
    let overridden = |key: &str| {
        extra.lines().any(|l| {
            l.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with(':'))
        })
    };
    let mut yaml: String = BASE
        .iter()
        .filter(|(key, _)| !overridden(key))
        .map(|(_, section)| *section)
        .collect();
    yaml.push_str(extra);
    yaml
}

/// `channels` and `auth` for a gateway that verifies HS256 tokens with `TEST_JWT_SECRET` (and
/// has the kit's two keys): `secret.*` needs claims, `members.*` any credential, everything else
/// is public. `more` is added under `auth:` (two-space indented keys).
pub fn jwt_config(more: &str) -> String {
    format!(
        "channels:
  - name: \"secret.*\"
    subscribe: claims
    publish: claims
  - name: \"members.*\"
    subscribe: authenticated
  - name: \"*\"
    subscribe: public
auth:
  jwt:
    secret_env: TEST_JWT_SECRET
  api_keys:
    - name: admin
      key_env: TEST_ADMIN_KEY
      publish: [\"*\"]
      admin: true
    - name: limited
      key_env: TEST_LIMITED_KEY
      publish: [\"limited.*\"]
{more}"
    )
}

/// A gateway process. Killed on drop.
pub struct Gateway {
    process: Process,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts `sse-gateway` on `base_config(extra)`.
    pub fn start(extra: &str) -> Gateway {
        Gateway::start_raw(&base_config(extra))
    }

    /// Starts `sse-gateway` on `base_config(extra)` with extra environment variables (which
    /// win over the kit's own, e.g. `RUST_LOG`).
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_raw_with_env(&base_config(extra), env)
    }

    /// Starts `sse-gateway` on exactly this YAML (which must listen on port 0).
    pub fn start_raw(yaml: &str) -> Gateway {
        Gateway::start_raw_with_env(yaml, &[])
    }

    fn start_raw_with_env(yaml: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let process = Process::start(
            "sse-gateway",
            Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
                .arg("--config")
                .arg(&config)
                .env("TEST_ADMIN_KEY", KEY)
                .env("TEST_LIMITED_KEY", LIMITED_KEY)
                .env("TEST_JWT_SECRET", JWT_SECRET)
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .current_dir(dir.path()),
        );
        // It prints its address just before it binds.
        process.wait_accepting(STARTUP);
        Gateway {
            addr: process.addr(),
            process,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.process.url(path)
    }

    /// What the gateway has logged (stderr) so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn signal(&self, name: &str) {
        self.process.signal(name);
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.process.wait_exit(within)
    }

    /// Sends `request` as is on a new connection and returns everything the gateway writes back
    /// before it closes (or 5 s pass): for requests no HTTP client would send.
    pub async fn raw_request(&self, request: &str) -> String {
        raw_request(self.addr, request.as_bytes(), Duration::from_secs(5)).await
    }

    /// A stream at `path` resuming after `last_event_id` (the header, as EventSource sends it).
    pub async fn resume(&self, path: &str, last_event_id: &str) -> SseClient {
        SseClient::connect_with(&self.url(path), &[("last-event-id", last_event_id)]).await
    }

    /// A JSON request with the admin key.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let resp = http()
            .get(self.url(path))
            .header("x-api-key", KEY)
            .send()
            .await
            .expect("admin request");
        assert_eq!(resp.status(), 200, "{path}");
        resp.json().await.expect("json")
    }

    /// Publishes with the admin key; returns the reply (status, JSON).
    pub async fn publish(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = http()
            .post(self.url("/broadcast"))
            .header("x-api-key", KEY)
            .json(&body)
            .send()
            .await
            .expect("publish");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Publishes `data` on `channel` and returns the event id.
    pub async fn publish_ok(&self, channel: &str, event: &str, data: &str) -> String {
        let (status, body) = self
            .publish(serde_json::json!({"channel": channel, "event": event, "data": data}))
            .await;
        assert_eq!(status, 202, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// The `/metrics` scrape.
    pub async fn metrics_text(&self) -> String {
        http()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// One metric's value from `/metrics` (summed over label sets matching `labels`).
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        metric_value(&self.metrics_text().await, name, labels)
    }
}

/// A gateway with a 10 s grace period and five open streams (returned with it), which keep
/// it draining for seconds once it is sent SIGTERM: its grace period ends them at random
/// moments within 9 s.
pub async fn gateway_with_streams_to_drain() -> (Gateway, Vec<SseClient>) {
    let gw = Gateway::start("shutdown:\n  grace_period: 10s\n");
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(SseClient::connect(&gw.url("/events?channel=d")).await);
    }
    eventually(Duration::from_secs(15), "5 streams", || async {
        gw.admin_get("/stats").await["streams"]["open"] == 5
    })
    .await;
    (gw, streams)
}

/// Publishes `p0`, `p1`... on `channel`, the n-th through `nodes[n % nodes.len()]`, until the
/// publish rate refuses one, and checks that refusal: 429 `rate_limited`. The run has the data
/// of every accepted publish, in order.
pub async fn publish_until_rate_limited(
    nodes: &[&Gateway],
    channel: &str,
) -> BucketRun<String, ()> {
    let run = until_refused(50, |n| {
        let gw = nodes[n % nodes.len()];
        let data = format!("p{n}");
        async move {
            let (status, body) = gw
                .publish(serde_json::json!({"channel": channel, "data": data}))
                .await;
            match status {
                202 => Ok(data),
                _ => Err((status, body)),
            }
        }
    })
    .await;
    let (status, body) = &run.refused;
    assert_eq!(
        (*status, error_code(body)),
        (429, Some("rate_limited")),
        "{body}"
    );
    BucketRun {
        admitted: run.admitted,
        refused: (),
        elapsed: run.elapsed,
    }
}

/// `GET path` with headers: the status and the error code (`""` for a success, whose body, a
/// stream's, is not read).
pub async fn status_and_code(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = http().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (status, code) = response_status_and_code(req.send().await.expect("request")).await;
    (status, code.unwrap_or_default())
}

/// `POST /tickets` with headers: the status, the headers and the JSON body.
pub async fn post_ticket(
    gw: &Gateway,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = http().post(gw.url("/tickets"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (
        status,
        headers,
        resp.json().await.unwrap_or(serde_json::Value::Null),
    )
}

pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
