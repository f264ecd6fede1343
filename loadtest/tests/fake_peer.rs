//! End to end against a tiny nchan-like peer: close-delimited HTTP/1.0 streams, `raw`
//! publishes answered on a keep-alive connection, and a two-process run through the real binary.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

mod common;
use common::{raw_args, raw_options};

/// Serves `GET` as a close-delimited event stream and turns each `POST` body into one event for
/// every stream. Returns its base URL.
async fn fake_peer() -> String {
    fake_peer_answering_after(Duration::ZERO).await
}

/// [`fake_peer`] that answers each `POST` only `delay` after it has sent the event to the
/// streams: a server that holds its publisher back.
async fn fake_peer_answering_after(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (events, _) = broadcast::channel::<Arc<str>>(1024);
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(conn, events.clone(), delay));
        }
    });
    base
}

async fn serve(mut conn: TcpStream, events: broadcast::Sender<Arc<str>>, delay: Duration) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        if head.starts_with("GET ") {
            let mut rx = events.subscribe();
            let _ = conn
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: hi\n\n")
                .await;
            while let Ok(data) = rx.recv().await {
                if conn
                    .write_all(format!("data: {data}\n\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
            return;
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        buf.drain(..head_end + length);
        let _ = events.send(body.into());
        tokio::time::sleep(delay).await;
        let reply = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        if conn.write_all(reply).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_publishes_reach_close_delimited_streams() {
    let base = fake_peer().await;
    // The peer runs in this process, so it is also "the server" whose figures are sampled.
    let pid = std::process::id().to_string();
    let report = sse_loadgen::run(raw_options(&base, &["--server-pid", &pid]))
        .await
        .unwrap();
    assert!(report.pass, "{}", report.summary());
    assert_eq!(report.delivered, 40 * 10);
    assert_eq!(report.latency_ms.count, 40 * 10);
    // CPU per delivered event, the server's and the load generator's own, user and kernel.
    let (server, loadgen) = (&report.server, &report.loadgen);
    for figure in [
        server.cpu_user_us_per_event,
        server.cpu_kernel_us_per_event,
        loadgen.cpu_user_us_per_event,
        loadgen.cpu_kernel_us_per_event,
    ] {
        assert!(figure.is_some_and(|us| us >= 0.0), "{}", report.summary());
    }
    assert!(server.rss_kib_idle.is_some_and(|kib| kib > 0));
    assert!(report.summary().contains("cpu us/event: server "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_counts_from_when_an_event_was_due_not_from_a_late_publish() {
    // 10 events at 50/s are due within 180 ms; answered 100 ms after each fan-out, the last is
    // written about 900 ms after the first. Timed from their writes, every event would arrive
    // within milliseconds.
    let base = fake_peer_answering_after(Duration::from_millis(100)).await;
    let report = sse_loadgen::run(raw_options(&base, &[])).await.unwrap();
    assert!(report.pass, "{}", report.summary());
    assert!(report.latency_ms.max >= 600.0, "{}", report.summary());
    assert!(report.publish_lag_ms.max >= 600.0, "{}", report.summary());
    assert!(
        report.publish_rate.is_some_and(|r| r < 12.0),
        "{}",
        report.summary()
    );

    // A peer that answers at once keeps to the schedule: nearer 50/s than the slow peer's 10.
    // (Not "about 50": the rate is 9 intervals over the 180 ms the writes span, so a stall of
    // 50 ms on a busy machine brings it below 40/s; above 20/s leaves room for about 270 ms.)
    let base = fake_peer().await;
    let report = sse_loadgen::run(raw_options(&base, &[])).await.unwrap();
    assert!(report.pass, "{}", report.summary());
    assert!(
        report.publish_rate.is_some_and(|r| r > 20.0),
        "{}",
        report.summary()
    );
    assert!(report.summary().contains("per s achieved"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_add_up() {
    let base = fake_peer().await;
    let mut opts = raw_options(&base, &["--processes", "2", "--streams", "41"]);
    opts.exe = Some(env!("CARGO_BIN_EXE_sse-loadgen").into());
    let report = sse_loadgen::run(opts).await.unwrap();
    assert!(report.pass, "{}", report.summary());
    assert_eq!(report.loadgen.processes, 2);
    assert_eq!(report.streams_open, 41);
    assert_eq!(report.delivered, 41 * 10);
    assert_eq!(report.connect_ms.count, 41);
}

#[tokio::test]
async fn the_deadline_ends_a_run_against_a_silent_server() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    // Three times the 1.5 s deadline, for a busy machine: a run that ignored it would wait on
    // the silent server for ever.
    let ceiling = std::time::Duration::from_millis(3 * 1500);
    let report = tokio::time::timeout(
        ceiling,
        sse_loadgen::run(raw_options(&base, &["--duration", "1.5"])),
    )
    .await
    .expect("the run ends by its deadline")
    .unwrap();
    assert!(!report.pass);
    assert_eq!(report.streams_failed, 40);
}

/// Runs the real binary with `args` under `script` (util-linux), which gives it a pseudo
/// terminal as stdin, stdout and stderr; returns everything it wrote there.
async fn run_on_a_terminal(args: &[String]) -> String {
    let command = std::iter::once(env!("CARGO_BIN_EXE_sse-loadgen").to_owned())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let out = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("script (util-linux) runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The flags of [`raw_args`] for the binary, with 30 events at 10/s: a run of about three
/// seconds, long enough for the line to be rewritten with every stream open.
fn binary_args(base: &str, extra: &[&str]) -> Vec<String> {
    let mut flags = vec!["--events", "30", "--rate", "10"];
    flags.extend_from_slice(extra);
    raw_args(base, &flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_sees_the_progress_line_rewritten_in_place() {
    let base = fake_peer().await;
    let screen = run_on_a_terminal(&binary_args(&base, &[])).await;
    let updates: Vec<&str> = screen
        .split("\r\x1b[2K")
        .filter(|s| s.starts_with("sse-loadgen: streams "))
        .collect();
    assert!(updates.len() >= 2, "{screen:?}");
    assert!(
        updates
            .iter()
            .any(|u| u.starts_with("sse-loadgen: streams 40/40 open, ")
                && u.contains(" events delivered, ")
                && u.ends_with("s elapsed")),
        "{updates:?}"
    );
    // Erased before the summary, which starts on a clean line.
    let summary_at = screen.rfind("\r\x1b[2K").expect("erased") + "\r\x1b[2K".len();
    assert!(
        !screen[summary_at..].starts_with("sse-loadgen: streams"),
        "the last thing on the line is the summary, not a stale progress line: {screen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_report_their_counts_to_the_parents_line() {
    let base = fake_peer().await;
    let screen = run_on_a_terminal(&binary_args(
        &base,
        &["--processes", "2", "--streams", "41"],
    ))
    .await;
    assert!(
        screen.contains("\r\x1b[2Ksse-loadgen: streams 41/41 open, "),
        "{screen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_progress_line_when_stderr_is_not_a_terminal() {
    let base = fake_peer().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-loadgen"))
        .args(binary_args(&base, &[]))
        .output()
        .await
        .expect("sse-loadgen runs");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\r') && !stderr.contains("streams"),
        "{stderr:?}"
    );
}
