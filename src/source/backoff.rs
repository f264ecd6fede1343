//! How long a source waits before reconnecting: exponential from the upstream's own `retry:`,
//! capped, with jitter so that many gateway nodes (or many sources on one failed upstream) do
//! not reconnect in lockstep.

use std::time::Duration;

use rand::Rng;

/// The delay after the first failure when the upstream never sent `retry:`.
const DEFAULT_BASE: Duration = Duration::from_secs(1);
/// Never reconnect faster than this, whatever `retry:` says.
const FLOOR: Duration = Duration::from_millis(100);
const CAP: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: DEFAULT_BASE,
            failures: 0,
        }
    }
}

impl Backoff {
    /// The upstream's `retry:` (milliseconds): the starting delay from now on.
    pub fn set_retry(&mut self, ms: u64) {
        self.base = Duration::from_millis(ms).clamp(FLOOR, CAP);
    }

    /// A connection worked (it delivered something): the next wait starts from the base again.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// The wait before the next attempt: `base × 2^failures` capped at 30 s, then a random
    /// point in its upper half, so the wait is never much shorter than what the upstream asked.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1 << self.failures.min(16))
            .min(CAP);
        self.failures = self.failures.saturating_add(1);
        let low = exp / 2;
        low + rand::rng().random_range(Duration::ZERO..=exp - low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_upstream_retry_up_to_the_cap_within_jitter() {
        let mut backoff = Backoff::default();
        backoff.set_retry(400);
        for expected_ms in [
            400u64, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000,
        ] {
            let delay = backoff.next_delay().as_millis() as u64;
            assert!(
                (expected_ms / 2..=expected_ms).contains(&delay),
                "{delay} ms for {expected_ms} ms"
            );
        }
        backoff.succeeded();
        assert!(backoff.next_delay() <= Duration::from_millis(400));
    }

    #[test]
    fn retry_is_clamped() {
        let mut backoff = Backoff::default();
        backoff.set_retry(0);
        assert!(backoff.next_delay() >= FLOOR / 2);
        backoff.set_retry(u64::MAX);
        assert!(backoff.next_delay() <= CAP);
    }
}
