//! The fault timeline: each fault at its fixed offset from the first publish, logged (on
//! stderr as it happens, and in the report) with the time it started and how long it took.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::options::{Fault, Options};

/// One fault as it happened.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FaultRecord {
    pub fault: Fault,
    /// When it started, in seconds from the first publish.
    pub at_s: f64,
    /// How long doing it took (for a node, its time down included).
    pub took_ms: u64,
    pub detail: String,
}

/// Does each of `opts.faults` at its offset from `start`. A fault that cannot be done (Redis
/// or the upstream does not come back) ends the run with that error: what follows it would
/// measure something else.
pub async fn run(
    cluster: &mut Cluster,
    opts: &Options,
    start: Instant,
) -> anyhow::Result<Vec<FaultRecord>> {
    let mut done = Vec::new();
    for (index, &fault) in opts.faults.0.iter().enumerate() {
        tokio::time::sleep_until(start + opts.fault_offset(index)).await;
        let began = Instant::now();
        let detail = match fault {
            Fault::Redis => cluster.restart_redis().await,
            Fault::Pubsub => cluster.kill_pubsub().await,
            Fault::Node => cluster.kill_node(opts.node_down).await,
            Fault::Upstream => cluster.restart_upstream().await,
        }?;
        let record = FaultRecord {
            fault,
            at_s: secs(began - start),
            took_ms: u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail,
        };
        eprintln!(
            "sse-chaos: [{:6.1} s] {} ({} ms)",
            record.at_s, record.detail, record.took_ms
        );
        done.push(record);
    }
    Ok(done)
}

/// Seconds, to the millisecond.
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
