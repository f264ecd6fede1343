//! Waiting on a condition up to a deadline, instead of sleeping and hoping it holds by then.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns true; panics naming `what` after `within`.
///
/// Checks against a counter or a status read after some event go through this: the thing
/// counted may lag the event that a test saw, by longer still on a busy machine.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
