//! `sse-floor`, the machine's floor for the benchmark report, driven by the load generator over
//! real sockets: every stream gets every event, over both worker threads.

use std::process::Command;

use test_kit::Process;

mod common;
use common::raw_options;

/// The floor server on a free loopback port; killed when dropped.
fn start_floor(extra: &[&str]) -> Process {
    Process::start(
        "sse-floor",
        Command::new(env!("CARGO_BIN_EXE_sse-floor"))
            .args(["--listen", "127.0.0.1:0", "--max-seconds", "60"])
            .args(extra),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stream_on_every_thread_gets_every_event() {
    let floor = start_floor(&["--threads", "2"]);
    let options = raw_options(
        &floor.url(""),
        &[
            "--streams",
            "101",
            "--events",
            "12",
            "--rate",
            "40",
            "--duration",
            "20",
        ],
    );
    let report = sse_loadgen::run(options).await.unwrap();
    assert!(report.pass, "{}", report.summary());
    assert_eq!(report.streams_open, 101);
    assert_eq!(report.delivered, 101 * 12);
    assert_eq!((report.duplicates, report.gaps), (0, 0));
}

#[test]
fn refuses_a_listen_address_off_loopback_and_bad_options() {
    for args in [
        &["--listen", "0.0.0.0:0"][..],
        &["--threads", "0"],
        &["--threads"],
        &["--bogus", "1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sse-floor"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: sse-floor"));
    }
}

#[test]
fn a_malformed_or_oversized_request_is_refused_and_the_server_serves_on() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    let floor = start_floor(&[]);
    let addr = floor.addr();
    let exchange = |request: &[u8]| {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The server may close before taking all of an oversized request.
        let _ = conn.write_all(request);
        // Until the reply's head is complete or the server closes (a publish connection is
        // kept open, so reading to the end would wait for the timeout).
        let mut reply = Vec::new();
        let mut chunk = [0u8; 1024];
        while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&reply).into_owned()
    };
    assert!(exchange(b"NOT HTTP\x01\r\n\r\n").starts_with("HTTP/1.1 400 "));
    // A complete request, but over the 64 KiB limit: closed without an answer (within the
    // limit, the same request would be a publish and get 202).
    let mut huge = b"POST /pub HTTP/1.1\r\nx: ".to_vec();
    huge.resize(70 * 1024, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(exchange(&huge), "");
    // Still serving: a publish is accepted.
    let reply = exchange(b"POST /pub HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
    assert!(reply.starts_with("HTTP/1.1 202 "), "{reply:?}");
}
