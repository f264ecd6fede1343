//! The real binary: the stdout line, signals, and command-line errors.

mod common;

use std::process::Stdio;

use common::{PATIENCE, PROMPTLY};
use futures_util::StreamExt;
use test_kit::Process;
use tokio::process::Command;
use tokio::time::{timeout, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_reference-upstream");

/// Starts the binary on a free port; its address is read from its stdout line.
fn spawn() -> Process {
    Process::start(
        "reference-upstream",
        std::process::Command::new(BIN).args([
            "--listen",
            "127.0.0.1:0",
            "--name",
            "proc",
            "--notify-interval",
            "0s",
        ]),
    )
}

async fn signal_exits_zero_with_a_stream_open(signal: &str) {
    let mut up = spawn();
    let http = reqwest::Client::new();
    let health: serde_json::Value = http
        .get(up.url("/healthz"))
        .send()
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(health["name"], "proc");

    let response = http
        .get(up.url("/streams/notifications"))
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

    let started = Instant::now();
    up.signal(signal);
    let status = up.wait_exit(2 * PATIENCE);
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < PROMPTLY, "took {:?}", started.elapsed());
    // The stream ended rather than being cut mid-event.
    while let Some(chunk) = timeout(PATIENCE, body.next()).await.expect("stream end") {
        if chunk.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn sigterm_exits_zero_promptly_with_a_stream_open() {
    signal_exits_zero_with_a_stream_open("TERM").await;
}

#[tokio::test]
async fn sigint_exits_zero_promptly_with_a_stream_open() {
    signal_exits_zero_with_a_stream_open("INT").await;
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
