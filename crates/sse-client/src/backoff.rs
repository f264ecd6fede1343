//! How long to wait before connecting again: exponential backoff with jitter, never shorter
//! than what the gateway asked for (`retry:` on the stream, `Retry-After` on a 429 or 503).

use std::time::Duration;

/// Exponential backoff with jitter, for reconnects. The defaults are the TypeScript client's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first retry. Default 1 s.
    pub initial: Duration,
    /// Upper bound of the delay. Default 30 s.
    pub max: Duration,
    /// Growth per failure in a row. Default 2.
    pub factor: f64,
    /// Share of the delay that is random, 0 to 1. Default 0.5: the wait is a random point in the
    /// upper half of the exponential delay, so clients dropped together do not come back together.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (1 for the first retry):
    /// `min(max, initial * factor^(attempt-1))`, less up to `jitter` of it at random.
    /// `random` is in 0..1; 0 gives the full delay.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(i32::MAX as u32) as i32;
        let grown = self.initial.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        // `min` also turns an infinite growth into `max`; `max(0)` guards a negative initial.
        let base = grown.min(self.max.as_secs_f64()).max(0.0);
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        Duration::from_secs_f64(base * (1.0 - jitter))
    }

    /// The wait before retry number `attempt`, jittered at random, and at least `floor` (what
    /// the gateway asked for).
    pub(crate) fn wait(&self, attempt: u32, floor: Duration) -> Duration {
        self.delay(attempt, rand::random()).max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_by_the_factor_up_to_the_max() {
        let b = Backoff::default();
        let delays: Vec<_> = (1..=7).map(|n| b.delay(n, 0.0)).collect();
        assert_eq!(
            delays,
            [1000, 2000, 4000, 8000, 16000, 30000, 30000].map(|ms| ms * MS)
        );
        assert_eq!(b.delay(u32::MAX, 0.0), b.max, "no overflow");
        assert_eq!(b.delay(0, 0.0), b.initial, "attempt 0 counts as the first");
    }

    #[test]
    fn jitter_takes_up_to_its_share_off() {
        let b = Backoff::default();
        assert_eq!(b.delay(2, 1.0), 1000 * MS, "half of 2 s at most");
        assert_eq!(b.delay(2, 0.5), 1500 * MS);
        let none = Backoff {
            jitter: 0.0,
            ..Backoff::default()
        };
        assert_eq!(none.delay(2, 1.0), 2000 * MS);
    }

    #[test]
    fn out_of_range_settings_are_clamped() {
        let b = Backoff {
            initial: 100 * MS,
            max: 1000 * MS,
            factor: 0.5,
            jitter: 7.0,
        };
        assert_eq!(
            b.delay(3, 0.0),
            100 * MS,
            "a factor below 1 does not shrink"
        );
        assert_eq!(b.delay(3, 2.0), Duration::ZERO, "jitter at most all of it");
    }

    #[test]
    fn the_gateways_wait_is_a_floor() {
        let b = Backoff::default();
        assert_eq!(b.wait(1, 5000 * MS), 5000 * MS);
        let waited = b.wait(1, 10 * MS);
        assert!((500 * MS..=1000 * MS).contains(&waited), "{waited:?}");
    }
}
