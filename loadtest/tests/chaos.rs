//! `sse-chaos` end to end, against the real gateway, reference upstream and `redis-server`:
//! a short run with one fault ends by itself, passes, and its report's figures add up, and every
//! process it started is gone when it ends, also when it is interrupted.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The gateway and the reference upstream, built beside `sse-chaos` (once, if a lone
/// `cargo test -p sse-loadgen` did not build the workspace); their paths as flags.
fn binaries() -> [String; 4] {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    let (gateway, upstream) = BUILT.get_or_init(|| {
        let chaos = PathBuf::from(env!("CARGO_BIN_EXE_sse-chaos"));
        let gateway = chaos.with_file_name("sse-gateway");
        let upstream = chaos.with_file_name("reference-upstream");
        if !gateway.exists() || !upstream.exists() {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "sse-gateway", "--bin", "sse-gateway"])
                .args(["-p", "reference-upstream", "--bin", "reference-upstream"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo build");
            assert!(status.success(), "building the gateway and upstream failed");
        }
        (gateway, upstream)
    });
    [
        "--gateway-bin".to_owned(),
        gateway.display().to_string(),
        "--upstream-bin".to_owned(),
        upstream.display().to_string(),
    ]
}

/// Waits until nothing listens on any of `addrs` any more.
fn all_stopped(addrs: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for addr in addrs {
        while TcpStream::connect(addr.as_str()).is_ok() {
            assert!(
                Instant::now() < deadline,
                "{addr} still listens after the run"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn addresses(report: &Value) -> Vec<String> {
    let a = &report["addresses"];
    let mut addrs = vec![
        a["redis"].as_str().unwrap().to_owned(),
        a["upstream"].as_str().unwrap().to_owned(),
    ];
    addrs.extend(
        a["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned)),
    );
    addrs
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn a_short_run_with_a_redis_restart_loses_nothing_and_its_figures_add_up() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sse-chaos"))
        .args(["--duration", "5s", "--faults", "redis", "--nodes", "2"])
        .args(["--subscribers", "3", "--rate", "100", "--source-rate", "5"])
        .args(["--settle", "5s", "--json"])
        .args(binaries())
        .output()
        .expect("sse-chaos runs");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Start, 5 s of publishing, at most 5 s of settling: far under the 72 s watchdog.
    assert!(elapsed < Duration::from_secs(45), "took {elapsed:?}");
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line; stderr:\n{stderr}"));
    let report: Value = serde_json::from_str(line).expect("JSON");

    // It ended by itself and passed: nothing accepted was lost or duplicated through the
    // Redis restart (docs/src/cluster.md, Reliability; the long run is `loadtest/run --chaos`).
    let verdict = report["verdict"].as_str().expect("verdict");
    assert_eq!(report["pass"], Value::Bool(true), "{verdict}\n{stderr}");
    assert!(verdict.starts_with("PASS"), "{verdict}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // The one fault happened, at its place (half way), and was logged.
    let faults = report["faults"].as_array().expect("faults");
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0]["fault"], "redis");
    let at = faults[0]["at_s"].as_f64().unwrap();
    assert!((2.4..4.0).contains(&at), "at {at} s");
    assert!(
        stderr.contains("Redis killed (SIGKILL) and started again empty"),
        "{stderr}"
    );

    // Every figure is there, and they add up, for both kinds of traffic.
    let subscribers = count(&report["subscribers"]["count"]);
    assert_eq!(subscribers, 6);
    for kind in ["published", "source"] {
        let c = &report[kind];
        let refused: u64 = c["other_status"]
            .as_object()
            .expect("other_status")
            .values()
            .map(count)
            .sum();
        assert_eq!(
            count(&c["sent"]),
            count(&c["accepted"])
                + count(&c["status_503"])
                + refused
                + count(&c["not_sent"])
                + count(&c["unanswered"]),
            "{kind}: every send has one answer"
        );
        assert!(count(&c["accepted"]) > 0, "{kind}: something was accepted");
        assert_eq!(
            count(&c["expected_deliveries"]),
            count(&c["accepted"]) * subscribers
        );
        assert_eq!(
            count(&c["expected_deliveries"]),
            count(&c["delivered"]) + count(&c["missed_after_reset"]) + count(&c["lost_deliveries"]),
            "{kind}: every owed delivery is delivered, covered by a reset, or lost"
        );
        assert!(count(&c["lost_events"]) <= count(&c["accepted"]));
        assert!(count(&c["lost_everywhere"]) <= count(&c["lost_events"]));
        assert!(count(&c["lost_deliveries"]) >= count(&c["lost_events"]));
        let phases = c["phases"].as_array().expect("phases");
        assert_eq!(phases.len(), 2, "start, then the fault");
        let by_phase = |key: &str| phases.iter().map(|p| count(&p[key])).sum::<u64>();
        assert_eq!(by_phase("accepted"), count(&c["accepted"]));
        assert_eq!(by_phase("lost_events"), count(&c["lost_events"]));
        assert_eq!(
            by_phase("duplicated_events"),
            count(&c["duplicated_events"])
        );
        assert_eq!(count(&c["lost_events"]), 0, "{kind}: lost");
        assert_eq!(count(&c["duplicated_events"]), 0, "{kind}: duplicated");
    }
    assert_eq!(count(&report["subscribers"]["not_kept"]), 0);
    assert!(report["subscribers"]["resets"].is_object());
    assert_eq!(report["node_figures"].as_array().unwrap().len(), 2);

    all_stopped(&addresses(&report));
}

#[test]
fn an_interrupted_run_leaves_no_process_behind() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-chaos"));
    command
        .args(["--duration", "60s", "--nodes", "2", "--subscribers", "1"])
        .args(binaries())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // As in a terminal: Ctrl-C's default action. A suite started in the background (`cmd &`,
    // nohup) hands its children SIGINT ignored, and sse-chaos would then run its full minute.
    // SAFETY: `signal` is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("sse-chaos starts");
    // "sse-chaos: ready: Redis on ADDR, upstream on ADDR, node A on ADDR, node B on ADDR; …"
    let mut ready = String::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    while !ready.starts_with("sse-chaos: ready: ") {
        ready.clear();
        assert!(
            stderr.read_line(&mut ready).unwrap() > 0,
            "sse-chaos ended before it was ready"
        );
    }
    let addrs: Vec<String> = ready
        .split([' ', ',', ';'])
        .filter(|word| word.starts_with("127.0.0.1:"))
        .map(str::to_owned)
        .collect();
    assert_eq!(addrs.len(), 4, "{ready}");
    // Ctrl-C.
    // SAFETY: a signal to our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert!(!status.success());
    all_stopped(&addrs);
}
