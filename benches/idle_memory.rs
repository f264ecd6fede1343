//! RSS per idle stream: starts the gateway (release build), opens N idle streams from several
//! loopback source addresses, and reports how much the gateway's resident memory grew per stream.
//!
//! `cargo bench --bench idle_memory -- [streams, default 10000] [gzip | br | zstd]`
//!
//! With an encoding, the gateway runs with `sse.compression: true` and every stream asks for it
//! (`Accept-Encoding`): the figure is then a compressed idle stream's, to set beside a plain one.
//!
//! Under `cargo test` (no `--bench` argument) it opens 100 streams: a quick check that the
//! benchmark still works, not a measurement.
//!
//! The client side is raw sockets in this process (it reads nothing but the opening bytes), so
//! only the gateway's memory is measured: `VmRSS` of its pid before and after, after a settle.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The gateway's `VmRSS` in KiB (0 once it is gone).
fn rss_kib(pid: u32) -> u64 {
    sse_loadgen::procfs::rss_kib(Some(pid)).unwrap_or(0)
}

async fn open_stream(
    gateway: SocketAddr,
    source: Ipv4Addr,
    encoding: Option<&str>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    let mut stream = socket.connect(gateway).await?;
    let accept = encoding
        .map(|e| format!("Accept-Encoding: {e}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!("GET /events?channel=idle HTTP/1.1\r\nHost: bench\r\n{accept}\r\n").as_bytes(),
        )
        .await?;
    // Wait for the opening chunk: the stream is registered once it is written.
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).await?;
    if n == 0 || !buf.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("stream refused"));
    }
    Ok(stream)
}

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let streams: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if benchmarking { 10_000 } else { 100 });
    let encoding = std::env::args().find(|a| ["gzip", "br", "zstd"].contains(&a.as_str()));
    let compression = if encoding.is_some() {
        "  compression: true\n"
    } else {
        ""
    };
    let dir = std::env::temp_dir().join(format!("idle-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nstatic_dir: \"\"\nchannels:\n  - name: \"*\"\n    subscribe: public\n\
             sse:\n  heartbeat_interval: 1h\n  max_connection_lifetime: 0s\n{compression}\
             limits:\n  max_connections: 100000\n"
        ),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-gateway"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start gateway");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let addr: SocketAddr = line
        .trim()
        .rsplit("http://")
        .next()
        .and_then(|a| a.parse().ok())
        .expect("address");
    let pid = child.id();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Warm up: one stream, so per-process one-time allocations are in the baseline.
        let mut warm = Vec::new();
        for _ in 0..50 {
            if let Ok(s) = open_stream(addr, Ipv4Addr::new(127, 0, 0, 1), encoding.as_deref()).await {
                warm.push(s);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss_kib(pid);
        let started = Instant::now();
        let mut held = Vec::with_capacity(streams);
        for i in 0..streams {
            // Spread over source addresses so no single 4-tuple space runs out.
            let source = Ipv4Addr::new(127, 0, 1 + (i / 20_000) as u8, 1 + (i % 200) as u8);
            held.push(
                open_stream(addr, source, encoding.as_deref())
                    .await
                    .expect("open stream"),
            );
        }
        let opened_in = started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss_kib(pid);
        let per_stream = (after.saturating_sub(before)) as f64 * 1024.0 / streams as f64;
        println!(
            "idle_memory encoding={} streams={streams} rss_before_kib={before} rss_after_kib={after} \
             per_stream_bytes={per_stream:.0} per_stream_kib={:.2} opened_in_ms={}",
            encoding.as_deref().unwrap_or("identity"),
            per_stream / 1024.0,
            opened_in.as_millis()
        );
        drop(held);
        drop(warm);
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
