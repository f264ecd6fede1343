//! Streams over HTTP/2 and over HTTPS/1.1 beside plain HTTP/1.1, in one run: for each, a fresh
//! gateway (release build), its resident memory per open stream, and the delivery of events
//! published at 2 per second (delivered, p50 and p99 publish-to-receive latency).
//!
//! `cargo bench --bench h2_streams -- --bench [connections] [streams per connection] [events]`
//! (defaults 100, 100 and 20): HTTP/2 opens `connections` connections of `streams per
//! connection` streams each; plain and HTTPS/1.1 open as many streams, one connection each.
//! `loadtest/run --h2` runs it (about a minute) and keeps the table in `loadtest/results/`.
//!
//! Under `cargo test` (no `--bench` argument) it opens 2 x 5 streams and publishes 2 events: a
//! check that the benchmark works, not a measurement.
//!
//! The clients are in this process (rustls and h2, as a browser would speak), so they share the
//! machine with the gateway: compare the rows of one run with each other, not across machines.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

const KEY: &str = "bench-key-0123456789";
/// Events per second, as in the streams-under-load scenario.
const RATE: f64 = 2.0;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Plain,
    Https1,
    H2,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Plain => "HTTP/1.1 (plain)",
            Kind::Https1 => "HTTPS HTTP/1.1",
            Kind::H2 => "HTTPS HTTP/2",
        }
    }
}

/// What the streams of one scenario received.
#[derive(Default)]
struct Received {
    delivered: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
}

impl Received {
    /// Takes the complete lines of `pending`; each `data: <unix nanos>` is one delivery.
    fn lines(&self, pending: &mut Vec<u8>) {
        let Some(end) = pending.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let now = unix_nanos();
        let mut found = Vec::new();
        for line in pending[..end].split(|&b| b == b'\n') {
            let sent = line
                .strip_prefix(b"data: ")
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.trim_end().parse::<u128>().ok());
            if let Some(sent) = sent {
                found.push((now.saturating_sub(sent) / 1000) as u64);
            }
        }
        pending.drain(..=end);
        if !found.is_empty() {
            self.delivered
                .fetch_add(found.len() as u64, Ordering::Relaxed);
            self.latencies_us.lock().unwrap().extend(found);
        }
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The gateway's `VmRSS` in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    sse_loadgen::procfs::rss_kib(Some(pid)).unwrap_or(0)
}

/// A CA and a server certificate for 127.0.0.1 it signed, as PEM files, and a client that
/// trusts the CA.
fn certificates(dir: &std::path::Path) -> TlsConnector {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("certificate");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write");
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.der().to_vec()))
        .expect("CA");
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

fn connector(base: &TlsConnector, alpn: &[u8]) -> TlsConnector {
    let mut config = ClientConfig::clone(base.config());
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

struct Gateway {
    child: Child,
    http: SocketAddr,
    https: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway(dir: &std::path::Path) -> Gateway {
    let config = dir.join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nstatic_dir: \"\"\n\
             tls: {{listen: \"127.0.0.1:0\", cert_file: \"{0}/cert.pem\", key_file: \"{0}/key.pem\"}}\n\
             channels:\n  - {{name: \"*\", subscribe: public, publish: claims}}\n\
             auth:\n  api_keys:\n    - {{name: bench, key_env: BENCH_KEY, publish: [\"*\"]}}\n\
             sse:\n  heartbeat_interval: 1h\n  max_connection_lifetime: 0s\n\
             limits:\n  max_connections: 100000\n",
            dir.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env("BENCH_KEY", KEY)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start gateway");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut address = |scheme: &str| -> SocketAddr {
        let line = lines.next().expect("a listening line").expect("stdout");
        line.rsplit(scheme)
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {scheme} address in {line:?}"))
    };
    let http = address("http://");
    let https = address("https://");
    Gateway { child, http, https }
}

/// Reads a stream's bytes (head, chunk framing and all) and counts the events in them.
async fn read_h1<T: AsyncRead + Unpin>(mut io: T, received: Arc<Received>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = io.read(&mut buf).await {
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        received.lines(&mut pending);
    }
}

/// Opens one HTTP/1.1 stream on `io` and waits for its opening bytes.
async fn open_h1<T: AsyncRead + AsyncWrite + Unpin>(io: &mut T) {
    io.write_all(b"GET /events?channel=bench HTTP/1.1\r\nHost: bench\r\n\r\n")
        .await
        .expect("request");
    let mut buf = [0u8; 512];
    let n = io.read(&mut buf).await.expect("answer");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "stream refused");
}

/// Opens `connections` x `per_connection` streams of `kind`; each is read by a task of its own.
async fn open(
    kind: Kind,
    gw: &Gateway,
    tls: &TlsConnector,
    connections: usize,
    per_connection: usize,
    received: &Arc<Received>,
) -> Vec<h2::client::SendRequest<Bytes>> {
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut h2_conns = Vec::new();
    let total = connections * per_connection;
    match kind {
        Kind::Plain => {
            for _ in 0..total {
                let mut io = TcpStream::connect(gw.http).await.expect("connect");
                open_h1(&mut io).await;
                tokio::spawn(read_h1(io, received.clone()));
            }
        }
        Kind::Https1 => {
            let tls = connector(tls, b"http/1.1");
            for _ in 0..total {
                let tcp = TcpStream::connect(gw.https).await.expect("connect");
                let mut io = tls.connect(name.clone(), tcp).await.expect("handshake");
                open_h1(&mut io).await;
                tokio::spawn(read_h1(io, received.clone()));
            }
        }
        Kind::H2 => {
            let tls = connector(tls, b"h2");
            for _ in 0..connections {
                let tcp = TcpStream::connect(gw.https).await.expect("connect");
                let io = tls.connect(name.clone(), tcp).await.expect("handshake");
                let (send, connection) = h2::client::Builder::new()
                    .initial_connection_window_size(16 << 20)
                    .handshake(io)
                    .await
                    .expect("h2 handshake");
                tokio::spawn(connection);
                for _ in 0..per_connection {
                    let request = http::Request::get("https://127.0.0.1/events?channel=bench")
                        .body(())
                        .expect("request");
                    let mut ready = send.clone().ready().await.expect("ready");
                    let (response, _) = ready.send_request(request, true).expect("send");
                    let mut body = response.await.expect("response").into_body();
                    let received = received.clone();
                    // The opening bytes before the next stream, as for HTTP/1.1.
                    let first = body.data().await.expect("opening").expect("data");
                    let _ = body.flow_control().release_capacity(first.len());
                    tokio::spawn(async move {
                        let mut pending = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            pending.extend_from_slice(&chunk);
                            received.lines(&mut pending);
                        }
                    });
                }
                h2_conns.push(send);
            }
        }
    }
    h2_conns
}

async fn publish(http: &reqwest::Client, gw: &Gateway) {
    let body = format!(
        r#"{{"channel":"bench","event":"t","data":"{}"}}"#,
        unix_nanos()
    );
    let status = http
        .post(format!("http://{}/broadcast", gw.http))
        .header("x-api-key", KEY)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("publish")
        .status();
    assert_eq!(status, 202);
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let defaults = if benchmarking {
        [20, 100, 20]
    } else {
        [2, 5, 2]
    };
    let arg = |i: usize| numbers.get(i).copied().unwrap_or(defaults[i]);
    let (connections, per_connection, events) = (arg(0), arg(1), arg(2));
    let streams = connections * per_connection;
    let dir = std::env::temp_dir().join(format!("h2-streams-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let tls = certificates(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "h2_streams: {streams} streams per row ({connections} HTTP/2 connections x \
         {per_connection} streams), {events} events at {RATE}/s"
    );
    println!();
    println!(
        "| transport | streams | connections | delivered | p50 ms | p99 ms | KiB per stream |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for kind in [Kind::Plain, Kind::Https1, Kind::H2] {
        let gw = start_gateway(&dir);
        let pid = gw.child.id();
        let received = Arc::new(Received::default());
        rt.block_on(async {
            let http = reqwest::Client::new();
            // The listeners accept once the gateway answers; one stream of the kind is opened
            // first so that one-time allocations are in the baseline.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while http
                .get(format!("http://{}/healthz", gw.http))
                .send()
                .await
                .is_err()
            {
                assert!(std::time::Instant::now() < deadline, "gateway not up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let warm = Arc::new(Received::default());
            let _warm = open(kind, &gw, &tls, 1, 1, &warm).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let before = rss_kib(pid);
            let (conns, per) = match kind {
                Kind::H2 => (connections, per_connection),
                _ => (streams, 1),
            };
            let _held = open(kind, &gw, &tls, conns, per, &received).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = rss_kib(pid);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE));
            for _ in 0..events {
                tick.tick().await;
                publish(&http, &gw).await;
            }
            let expected = (streams * events) as u64;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while received.delivered.load(Ordering::Relaxed) < expected
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut latencies = std::mem::take(&mut *received.latencies_us.lock().unwrap());
            latencies.sort_unstable();
            let connections_used = if kind == Kind::H2 {
                connections
            } else {
                streams
            };
            println!(
                "| {} | {streams} | {connections_used} | {}/{expected} | {:.2} | {:.2} | {:.2} |",
                kind.label(),
                received.delivered.load(Ordering::Relaxed),
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
                after.saturating_sub(before) as f64 / streams as f64,
            );
        });
        drop(gw);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
