//! What the end-to-end tests of the load generator share.

use clap::Parser as _;
use sse_loadgen::Options;

/// Options for a run against a server that takes `raw` publishes on `{base}/pub` and serves
/// streams on `{base}/sub` (nchan's shape): 40 streams from 3 source addresses, 10 events at
/// 50/s, at most 15 s; `extra` flags override these (clap keeps the last value).
pub fn raw_options(base: &str, extra: &[&str]) -> Options {
    let url = format!("{base}/sub");
    let publish_url = format!("{base}/pub");
    let mut args = vec![
        "sse-loadgen",
        "--url",
        &url,
        "--publish-url",
        &publish_url,
        "--publish-format",
        "raw",
        "--streams",
        "40",
        "--source-ips",
        "3",
        "--events",
        "10",
        "--rate",
        "50",
        "--duration",
        "15",
    ];
    args.extend_from_slice(extra);
    Options::try_parse_from(args).unwrap()
}
