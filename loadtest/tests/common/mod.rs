//! What the end-to-end tests of the load generator share.

use clap::Parser as _;
use sse_loadgen::Options;

/// The flags of a run against a server that takes `raw` publishes on `{base}/pub` and serves
/// streams on `{base}/sub` (nchan's shape): 40 streams from 3 source addresses, 10 events at
/// 50/s, at most 15 s; `extra` flags override these (clap keeps the last value).
pub fn raw_args(base: &str, extra: &[&str]) -> Vec<String> {
    let url = format!("{base}/sub");
    let publish_url = format!("{base}/pub");
    [
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
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

/// The options of [`raw_args`], as `sse-loadgen` parses them.
pub fn raw_options(base: &str, extra: &[&str]) -> Options {
    Options::try_parse_from(std::iter::once("sse-loadgen".to_owned()).chain(raw_args(base, extra)))
        .unwrap()
}
