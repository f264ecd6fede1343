//! A real `sse-gateway` process on port 0 for the client to talk to, the admin calls the tests
//! make on it, and an [`EventStream`] driven in a task of its own so that a test can publish and
//! kick while the client reads.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{json, Value};
use sse_client::{Backoff, Error, Event, EventStream, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The admin and publish key of every test gateway.
pub const KEY: &str = "client-test-key-0123456789";
/// The HS256 secret test gateways verify tokens with.
pub const JWT_SECRET: &str = "client-test-jwt-secret-0123456789-abcdefgh";
/// The deadline of every wait: generous, for a busy 2-core machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// Quick reconnects, so that tests do not wait out the defaults' seconds.
pub const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(200),
    factor: 2.0,
    jitter: 0.5,
};

/// The base config of test gateways, with `extra` added; a top-level key in `extra` replaces
/// the base's section of that key. `secret.*` channels need a credential whose claims cover
/// them; everything else is public.
pub fn config(extra: &str) -> String {
    const BASE: &[(&str, &str)] = &[
        ("listen", "listen: 127.0.0.1:0\n"),
        ("static_dir", "static_dir: null\n"),
        ("sse", "sse:\n  retry: 100ms\n"),
        (
            "channels",
            "channels:\n  - name: \"secret.*\"\n    subscribe: claims\n  - name: \"*\"\n    subscribe: public\n",
        ),
        (
            "auth",
            "auth:\n  jwt:\n    secret_env: TEST_JWT_SECRET\n  api_keys:\n    - name: admin\n      key_env: TEST_ADMIN_KEY\n      publish: [\"*\"]\n      admin: true\n",
        ),
        ("shutdown", "shutdown:\n  grace_period: 1s\n"),
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

/// A gateway process on `config(extra)`. Killed on drop.
pub struct Gateway {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
}

impl Gateway {
    pub fn start(extra: &str) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("gateway.yaml"), config(extra)).expect("write config");
        let mut child = Command::new(gateway_binary())
            .arg("--config")
            .arg(dir.path().join("gateway.yaml"))
            .env("TEST_ADMIN_KEY", KEY)
            .env("TEST_JWT_SECRET", JWT_SECRET)
            .env("RUST_LOG", "info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sse-gateway");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]);
                sink.lock().expect("stderr").push_str(&text);
            }
        });
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("sse-gateway listening on http://") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(WAIT).map(|a| a.parse()) {
            Ok(Ok(addr)) => addr,
            _ => {
                let _ = child.kill();
                panic!(
                    "the gateway did not start:\n{}",
                    stderr.lock().expect("stderr")
                );
            }
        };
        let gateway = Gateway {
            child,
            addr,
            dir,
            stderr,
        };
        // It prints its address once bound, and accepts a moment later.
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the gateway never accepted:\n{}",
                gateway.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// Replaces the config file with `config(extra)`; the gateway reloads it.
    pub fn rewrite_config(&self, extra: &str) {
        std::fs::write(self.dir.path().join("gateway.yaml"), config(extra)).expect("write config");
    }

    /// Publishes with the admin key; returns the reply's status and JSON.
    pub async fn publish(&self, body: Value) -> (u16, Value) {
        let reply = http()
            .post(self.url("/broadcast"))
            .header("x-api-key", KEY)
            .json(&body)
            .send()
            .await
            .expect("publish");
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    /// Publishes `data` as an `event` on `channel`; returns the event's id.
    pub async fn publish_ok(&self, channel: &str, event: &str, data: &str) -> String {
        let (status, body) = self
            .publish(json!({"channel": channel, "event": event, "data": data}))
            .await;
        assert_eq!(status, 202, "{body}");
        body["id"].as_str().expect("id").to_owned()
    }

    /// An admin `GET`'s JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        let reply = http()
            .get(self.url(path))
            .header("x-api-key", KEY)
            .send()
            .await
            .expect("admin request");
        assert_eq!(reply.status(), 200, "{path}");
        reply.json().await.expect("json")
    }

    /// The ids of the open streams on `channel`.
    pub async fn stream_ids(&self, channel: &str) -> Vec<String> {
        let clients = self.admin_get("/clients").await;
        let list = clients["clients"].as_array().cloned().unwrap_or_default();
        list.iter()
            .filter(|c| {
                c["channels"]
                    .as_array()
                    .is_some_and(|cs| cs.contains(&json!(channel)))
            })
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until `channel` has exactly one open stream and it is not `except`; returns its id.
    pub async fn the_stream_on(&self, channel: &str, except: Option<&str>) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let [id] = self.stream_ids(channel).await.as_slice() {
                if Some(id.as_str()) != except {
                    return id.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no new stream on {channel} appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until stream `id` is no longer open on `channel`: it has ended, and no event
    /// published from now on can reach it.
    pub async fn until_gone(&self, channel: &str, id: &str) {
        let deadline = Instant::now() + WAIT;
        while self.stream_ids(channel).await.iter().any(|open| open == id) {
            assert!(Instant::now() < deadline, "stream {id} did not end");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `DELETE /clients/{id}`: the gateway ends that stream.
    pub async fn kick(&self, id: &str) {
        let reply = http()
            .delete(self.url(&format!("/clients/{id}")))
            .header("x-api-key", KEY)
            .send()
            .await
            .expect("kick");
        assert_eq!(reply.status(), 204, "kick {id}");
    }

    /// One counter's value from `/metrics`, summed over the samples whose labels contain `labels`.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = http()
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let metric = key.split('{').next()?;
                (metric == name && key.contains(labels)).then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// An HS256 token for `sub` that may subscribe to `subscribe` and expires in `ttl` seconds.
pub fn token(sub: &str, subscribe: &[&str], ttl: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({"sub": sub, "exp": now + ttl, "subscribe": subscribe});
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &key,
    )
    .expect("sign")
}

/// An [`EventStream`] polled in a task of its own, so the test can act on the gateway meanwhile.
/// Each item comes with the stream's connection count as of that item.
pub struct Reader {
    items: mpsc::Receiver<(Result<Message, Error>, u64)>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    pub fn spawn(mut stream: EventStream) -> Reader {
        let (tx, items) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                if tx.send((item, stream.connections())).await.is_err() {
                    return;
                }
            }
        });
        Reader { items, task }
    }

    /// The next item and the connection count then; `None` once the stream has ended. Panics
    /// when nothing comes within [`WAIT`].
    pub async fn next(&mut self) -> Option<(Result<Message, Error>, u64)> {
        tokio::time::timeout(WAIT, self.items.recv())
            .await
            .expect("the stream yielded nothing in time")
    }

    /// The next item, which must be an event.
    pub async fn event(&mut self) -> Event {
        match self.next().await {
            Some((Ok(Message::Event(event)), _)) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next item, which must be the stream's last, an error.
    pub async fn final_error(&mut self) -> Error {
        let error = match self.next().await {
            Some((Err(error), _)) => error,
            other => panic!("expected an error, got {other:?}"),
        };
        assert!(
            self.next().await.is_none(),
            "the stream ends after an error"
        );
        error
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TCP relay in front of the gateway that keeps every byte clients send, to check what went
/// over the wire. Stops with the test's runtime.
pub struct Tap {
    pub addr: SocketAddr,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    pub async fn start(to: SocketAddr) -> Tap {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = sent.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let upstream = async {
                        let mut buf = [0; 8192];
                        while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                            record.lock().expect("tap").extend_from_slice(&buf[..n]);
                            if to_server.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_server.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        });
        Tap { addr, sent }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The request heads sent so far (each up to its blank line), in order.
    pub fn request_heads(&self) -> Vec<String> {
        let sent = String::from_utf8_lossy(&self.sent.lock().expect("tap")).into_owned();
        sent.split("\r\n\r\n")
            .filter(|head| !head.is_empty())
            .map(|head| head.to_ascii_lowercase())
            .collect()
    }
}

/// The `sse-gateway` binary of this workspace: beside this test's own directory of binaries
/// (`cargo test --workspace` builds it first), or built now when it is missing or older than
/// the gateway's sources.
pub fn gateway_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        // target/debug/deps/<test> -> target/debug/sse-gateway
        let dir = exe.parent().and_then(Path::parent).expect("target dir");
        let binary = dir.join(format!("sse-gateway{}", std::env::consts::EXE_SUFFIX));
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let built = std::fs::metadata(&binary).and_then(|m| m.modified()).ok();
        let sources = ["src", "crates/sse-wire/src"]
            .iter()
            .filter_map(|path| newest(&root.join(path)))
            .max();
        if built.is_none() || sources > built {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--bin", "sse-gateway"])
                .current_dir(&root)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build --bin sse-gateway failed");
        }
        binary
    })
}

/// The newest modification time of `path` and, for a directory, of everything under it.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| newest(&entry.ok()?.path()))
        .max()
}
