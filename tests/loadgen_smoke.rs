//! The CI smoke scenario of the load generator: a few hundred streams from several source
//! addresses against a real gateway, every event delivered once to every stream. Throughput
//! and latency targets are shown by `loadtest/run`, not here.

mod common;

use clap::Parser as _;
use sse_loadgen::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_streams_get_every_event_once() {
    let gw = common::Gateway::start("");
    let url = gw.url("/events?channel=smoke");
    let publish_url = gw.url("/broadcast");
    let pid = gw.pid().to_string();
    let opts = Options::try_parse_from([
        "sse-loadgen",
        "--url",
        &url,
        "--publish-url",
        &publish_url,
        "--channel",
        "smoke",
        "--api-key",
        common::KEY,
        "--streams",
        "300",
        "--source-ips",
        "4",
        "--events",
        "20",
        "--rate",
        "20",
        "--settle",
        "5",
        "--duration",
        "15",
        "--server-pid",
        &pid,
    ])
    .expect("valid flags");

    let report = sse_loadgen::run(opts).await.expect("run");

    assert!(
        report.pass,
        "{}\n{}\ngateway log:\n{}",
        report.summary(),
        report.json_line(),
        gw.logs()
    );
    assert_eq!(report.streams_open, 300);
    assert_eq!(report.events_published, 20);
    assert_eq!(report.delivered, 300 * 20);
    assert_eq!(report.expected, 300 * 20);
    assert_eq!(
        (report.duplicates, report.gaps, report.disconnects),
        (0, 0, 0)
    );
    assert!(report.latency_ms.p99 > 0.0, "{:?}", report.latency_ms);
    assert_eq!(report.latency_ms.count, 300 * 20);
    assert!(report.server.rss_kib_idle.is_some_and(|kib| kib > 0));
}

#[tokio::test]
async fn refuses_a_target_that_is_not_loopback() {
    let opts = Options::try_parse_from(["sse-loadgen", "--url", "http://192.0.2.7:8080/events"])
        .expect("valid flags");
    let err = sse_loadgen::run(opts).await.expect_err("refused");
    let usage = err
        .downcast_ref::<sse_loadgen::UsageError>()
        .expect("a usage error");
    assert!(usage.0.contains("not loopback"), "{usage}");
}
