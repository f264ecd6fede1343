//! The `sse-loadgen` command: parses the flags, runs [`sse_loadgen::run`] (or, with the hidden
//! `--child`, one share of a multi-process run), prints the summary and the JSON line.
//!
//! Exit status: 0 PASS, 1 FAIL (or an error during the run), 2 usage error.

use std::process::exit;
use std::time::Duration;

use clap::Parser as _;
use sse_loadgen::{Options, UsageError};

/// How long past `--duration` the watchdog lets the process live: the run's own phases all
/// stop at the deadline, so this only fires if something is stuck, and it still ends the run.
const WATCHDOG_GRACE: Duration = Duration::from_secs(2);

fn main() {
    // clap exits 2 on a bad flag, 0 for --help and --version.
    let opts = Options::parse();
    start_watchdog(opts.duration);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sse-loadgen: cannot start the runtime: {e}");
            exit(1);
        }
    };
    let json_only = opts.json;
    let result = runtime.block_on(async move {
        if opts.child {
            sse_loadgen::run_child(opts).await.map(|()| None)
        } else {
            sse_loadgen::run(opts).await.map(Some)
        }
    });
    // Exit without dropping the runtime: a child's stdin reader sits in a blocking thread
    // that a runtime shutdown would wait for.
    match result {
        Ok(Some(report)) => {
            if !json_only {
                print!("{}", report.summary());
            }
            println!("{}", report.json_line());
            exit(if report.pass { 0 } else { 1 });
        }
        Ok(None) => exit(0),
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            eprintln!("sse-loadgen: {e}");
            exit(2);
        }
        Err(e) => {
            eprintln!("sse-loadgen: {e:#}");
            exit(1);
        }
    }
}

/// Ends the process shortly after `--duration` whatever it is doing: the promise is that a run
/// always stops by its deadline.
fn start_watchdog(duration_secs: f64) {
    if !duration_secs.is_finite() || duration_secs <= 0.0 {
        return; // validate() reports it
    }
    let limit = Duration::from_secs_f64(duration_secs) + WATCHDOG_GRACE;
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("sse-loadgen: still running {limit:?} after start; stopping (FAIL)");
        exit(1);
    });
}
