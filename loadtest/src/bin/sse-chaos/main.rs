//! `sse-chaos`: several gateway nodes on one Redis, publishing at a steady rate with
//! subscribers on every node, while Redis, the pub/sub link, a node and the upstream are made
//! to fail; then the count of what every accepted event became.
//!
//! A run: start a `redis-server` (no persistence), the reference upstream and `--nodes`
//! gateways on it (every port on 127.0.0.1, picked by the system) → open `--subscribers`
//! [`EventSource`](sse_loadgen::eventsource::EventSource) clients per node on channels `chaos`
//! and `notifications` → for `--duration`, publish `--rate` events per second on `chaos`
//! spread over the nodes, and post `--source-rate` notifications per second to the upstream
//! (a gateway source relays them into `notifications`), while the faults happen at fixed
//! offsets → wait up to `--settle` for every subscriber to catch up → report (text, then one
//! JSON line) and stop every process.
//!
//! Exit status: 0 when no accepted event was lost or duplicated, 1 when one was (or the run
//! failed), 2 on a usage error.
//!
//! # Layout
//! - [`options`]: the command line.
//! - [`cluster`]: the processes, and the faults done to them.
//! - [`traffic`]: the publishes and upstream posts, with every answer.
//! - [`subscribers`]: the clients, each keeping what it received.
//! - [`faults`]: the timeline.
//! - [`tally`]: the accounting and the report.

mod cluster;
mod faults;
mod options;
mod subscribers;
mod tally;
mod traffic;

use std::process::exit;
use std::time::Duration;

use clap::Parser as _;
use tokio::time::Instant;

use options::Options;
use tally::{published_seq, source_seq, Report};

/// Longest wait for every subscriber's first stream to open.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

fn main() {
    // clap exits 2 on a bad flag, 0 for --help and --version.
    let opts = Options::parse();
    if let Err(e) = opts.validate() {
        eprintln!("sse-chaos: {e}");
        exit(2);
    }
    start_watchdog(opts.time_limit());
    // One thread: every child process is spawned from it, which is what their
    // PR_SET_PDEATHSIG needs (see `cluster`); a few thousand events a second fit in it.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sse-chaos: cannot start the runtime: {e}");
            exit(1);
        }
    };
    match runtime.block_on(run(&opts)) {
        Ok(report) => {
            if !opts.json {
                print!("{}", report.summary());
            }
            println!("{}", report.json_line());
            exit(if report.pass { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("sse-chaos: error: {e:#}");
            exit(1);
        }
    }
}

/// One run; every process it started is killed when it returns (the cluster is dropped).
async fn run(opts: &Options) -> anyhow::Result<Report> {
    let began = Instant::now();
    let mut cluster = cluster::Cluster::start(opts).await?;
    // Each subscriber keeps at most twice what the run should send it.
    let planned = (opts.rate + opts.source_rate) * opts.duration.as_secs_f64();
    let cap = (planned * 2.0) as usize + 10_000;
    let pool = subscribers::Pool::open(&cluster.table, opts.subscribers, cap, OPEN_TIMEOUT).await?;
    eprintln!(
        "sse-chaos: ready: {}; {} subscribers open; publishing for {:?}",
        cluster.addresses(),
        opts.subscribers * opts.nodes,
        opts.duration
    );

    let start = Instant::now();
    let until = start + opts.duration;
    let publishing = tokio::spawn(traffic::publish(
        cluster.table.clone(),
        cluster.key.clone(),
        opts.rate,
        start,
        until,
    ));
    let posting = tokio::spawn(traffic::post_notifications(
        cluster.upstream_gate.clone(),
        opts.source_rate,
        start,
        until,
    ));
    let faults = match faults::run(&mut cluster, opts, start).await {
        Ok(faults) => faults,
        Err(e) => {
            publishing.abort();
            posting.abort();
            return Err(e);
        }
    };
    let published = publishing.await?;
    let posted = posting.await?;

    let settling = Instant::now();
    let caught_up = pool
        .settle(
            &tally::accepted(&published),
            &tally::accepted(&posted),
            opts.settle,
        )
        .await;
    let settle_s = settling.elapsed().as_secs_f64();
    let node_figures = cluster.node_figures().await;
    let addresses = cluster.addresses();
    let logs = pool.finish();

    let mut boundaries = vec![(0.0, "start".to_owned())];
    boundaries.extend(faults.iter().map(|f| (f.at_s, f.fault.name().to_owned())));
    let published = tally::category(&published, &logs, published_seq, &boundaries);
    let source = tally::category(&posted, &logs, source_seq, &boundaries);
    let subscribers = tally::subscribers(&logs);
    let why = tally::failures(&published, &source, &subscribers);
    let verdict = if why.is_empty() {
        format!(
            "PASS: 0 lost and 0 duplicated among {} accepted events and {} upstream notifications",
            published.accepted, source.accepted
        )
    } else {
        format!("FAIL: {}", why.join("; "))
    };
    Ok(Report {
        mode: "chaos",
        command: std::env::args().collect::<Vec<_>>().join(" "),
        nodes: opts.nodes,
        subscribers_per_node: opts.subscribers,
        duration_s: opts.duration.as_secs_f64(),
        rate: opts.rate,
        source_rate: opts.source_rate,
        faults,
        published,
        source,
        subscribers,
        node_figures,
        addresses,
        caught_up,
        settle_s,
        elapsed_s: began.elapsed().as_secs_f64(),
        pass: why.is_empty(),
        verdict,
    })
}

/// Ends the process past `limit` whatever it is doing: a run always stops by itself. The
/// processes it started die with it (PR_SET_PDEATHSIG).
fn start_watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("sse-chaos: still running {limit:?} after start; stopping (FAIL)");
        exit(1);
    });
}
