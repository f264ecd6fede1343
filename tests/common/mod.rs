//! Test kit: a real gateway process on a free port, a strict SSE client over a real socket, and
//! helpers that wait on a condition with a deadline (never a bare sleep).
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sse_gateway::sse::parse::{ParsedEvent, ParsedItem, Parser, ParserLimits};

pub mod redis;
mod upstream;
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
    child: Option<Child>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
            .arg("--config")
            .arg(&config)
            .env("TEST_ADMIN_KEY", KEY)
            .env("TEST_LIMITED_KEY", LIMITED_KEY)
            .env("TEST_JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sse-gateway");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let listening = listening_address(&mut child, "sse-gateway");
        let addr = match listening {
            Some(addr) => addr,
            None => {
                let _ = child.kill();
                panic!("gateway did not start:\n{}", stderr.lock().unwrap());
            }
        };
        let gw = Gateway {
            child: Some(child),
            addr,
            dir,
            stderr,
        };
        gw.wait_ready();
        gw
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "gateway never accepted:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not exit in {within:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `request` as is on a new connection and returns everything the gateway writes back
    /// before it closes (or 5 s pass): for requests no HTTP client would send.
    pub async fn raw_request(&self, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut sock = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        sock.write_all(request.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
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

    /// One metric's value from `/metrics` (summed over label sets matching `labels`).
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = http()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        metric_value(&text, name, labels)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sum of the samples of `name` whose label text contains `labels` (empty: all).
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let metric = key.split('{').next()?;
            (metric == name && key.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// `GET path` with headers: the status and the error code (if any). The body of a 200 (a
/// stream, which never ends) is not read.
pub async fn status_and_code(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = http().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    if status == 200 {
        return (status, String::new());
    }
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, body["error"]["code"].as_str().unwrap_or("").into())
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

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Waits until `check` returns true, polling, at most `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A strict SSE client over a real HTTP connection, parsing with the gateway's WHATWG parser.
pub struct SseClient {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    body: Option<futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    parser: Parser,
    pending: std::collections::VecDeque<ParsedItem>,
    /// Every byte received, for byte-level assertions.
    pub raw: Vec<u8>,
    /// The body ended (server closed the stream).
    pub ended: bool,
    /// Why the body ended badly (a cut-off chunked body, a reset), if it did: what a strict
    /// client (Chromium, httpx, curl) reports as an error.
    pub end_error: Option<String>,
}

impl SseClient {
    pub async fn connect(url: &str) -> SseClient {
        SseClient::connect_with(url, &[]).await
    }

    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut req = http().get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("connect");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        SseClient {
            status,
            headers,
            body: Some(resp.bytes_stream().boxed()),
            parser: Parser::new(ParserLimits::default()),
            pending: Default::default(),
            raw: Vec::new(),
            ended: false,
            end_error: None,
        }
    }

    /// The next parsed item, or `None` if the stream ended or nothing came within `within`.
    pub async fn next_item(&mut self, within: Duration) -> Option<ParsedItem> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            let body = self.body.as_mut()?;
            match tokio::time::timeout_at(deadline, body.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(chunk))) => {
                    self.raw.extend_from_slice(&chunk);
                    let mut out = Vec::new();
                    self.parser.push(&chunk, &mut out).expect("valid SSE");
                    self.pending.extend(out);
                }
                Ok(end) => {
                    self.end_error = end.and_then(|e| e.err()).map(|e| format!("{e:?}"));
                    self.ended = true;
                    self.body = None;
                    return None;
                }
            }
        }
    }

    /// The next event (comments and retry skipped).
    pub async fn next_event(&mut self, within: Duration) -> Option<ParsedEvent> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left).await? {
                ParsedItem::Event(e) => return Some(e),
                _ => continue,
            }
        }
    }

    /// Exactly `n` events, or panics after `within`.
    pub async fn events(&mut self, n: usize, within: Duration) -> Vec<ParsedEvent> {
        let deadline = Instant::now() + within;
        let mut got = Vec::with_capacity(n);
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left).await {
                Some(e) => got.push(e),
                None => panic!(
                    "got {} of {n} events, the last {:?}",
                    got.len(),
                    got.last().map(|e: &ParsedEvent| &e.id)
                ),
            }
        }
        got
    }

    /// The data of exactly `n` events, or panics after `within`.
    pub async fn data(&mut self, n: usize, within: Duration) -> Vec<String> {
        self.events(n, within)
            .await
            .into_iter()
            .map(|e| e.data)
            .collect()
    }

    /// Asserts that no event arrives within `window` (a negative check must wait some time).
    pub async fn assert_no_event(&mut self, window: Duration) {
        if let Some(e) = self.next_event(window).await {
            panic!("unexpected event {e:?}");
        }
    }

    /// Reads until the server ends the stream, at most `within`; returns the items seen.
    pub async fn until_end(&mut self, within: Duration) -> Vec<ParsedItem> {
        let deadline = Instant::now() + within;
        let mut items = Vec::new();
        while !self.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "stream did not end in {within:?}");
            if let Some(item) = self.next_item(left).await {
                items.push(item);
            }
        }
        items
    }
}

/// The address in the `PROGRAM listening on http://ADDR` line the child prints on stdout once
/// it is bound; `None` if it does not within 20 s.
pub fn listening_address(child: &mut Child, program: &str) -> Option<SocketAddr> {
    let stdout = child.stdout.take().expect("stdout piped");
    let prefix = format!("{program} listening on http://");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix(&prefix) {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).ok()?;
    Some(addr.parse().expect("address"))
}

pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}
