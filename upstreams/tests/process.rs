//! The real binary: the stdout line, signals, and command-line errors.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::PATIENCE;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{timeout, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_reference-upstream");

/// Starts the binary on a free port and returns it with the address from its stdout line.
async fn spawn() -> (Child, String) {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--name",
            "proc",
            "--notify-interval",
            "0s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    timeout(PATIENCE, BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("stdout line in time")
        .expect("read stdout");
    let addr = line
        .trim_end()
        .strip_prefix("reference-upstream listening on http://")
        .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"))
        .to_owned();
    (child, addr)
}

async fn signal_exits_zero_with_a_stream_open(signal: libc::c_int) {
    let (mut child, addr) = spawn().await;
    let http = reqwest::Client::new();
    let health: serde_json::Value = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(health["name"], "proc");

    let response = http
        .get(format!("http://{addr}/streams/notifications"))
        .send()
        .await
        .expect("stream");
    let mut body = response.bytes_stream();
    let first = timeout(PATIENCE, body.next())
        .await
        .expect("first chunk in time")
        .expect("a chunk")
        .expect("bytes");
    assert!(first.starts_with(b"retry: 1000"));

    let pid = child.id().expect("pid") as libc::pid_t;
    let started = Instant::now();
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let status = timeout(PATIENCE, child.wait())
        .await
        .expect("exit in time")
        .expect("wait");
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    // The stream ended rather than being cut mid-event.
    while let Some(chunk) = timeout(PATIENCE, body.next()).await.expect("stream end") {
        if chunk.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn sigterm_exits_zero_promptly_with_a_stream_open() {
    signal_exits_zero_with_a_stream_open(libc::SIGTERM).await;
}

#[tokio::test]
async fn sigint_exits_zero_promptly_with_a_stream_open() {
    signal_exits_zero_with_a_stream_open(libc::SIGINT).await;
}

#[tokio::test]
async fn bad_options_are_refused() {
    for args in [
        &["--heartbeat", "0s"][..],
        &["--notify-interval", "soon"],
        &["--history", "0"],
        &["--listen", "nowhere"],
    ] {
        let output = timeout(
            PATIENCE,
            Command::new(BIN).args(args).stdout(Stdio::piped()).output(),
        )
        .await
        .expect("exit in time")
        .expect("run");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
