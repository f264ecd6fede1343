//! Checking a token bucket by what it promises, which holds however slow the machine is:
//! never more than the burst plus what the rate refills over the time the attempts took, and
//! a refusal once that is spent. An exact sequence of answers (three accepted, then a refusal)
//! holds only while the attempts are faster than one refill, which a busy machine breaks.

use std::future::Future;
use std::time::{Duration, Instant};

/// What a run of attempts against a token bucket got.
pub struct BucketRun<T, R> {
    /// The admitted attempts' results, in order.
    pub admitted: Vec<T>,
    /// The first refusal, which ended the run.
    pub refused: R,
    /// From before the first attempt to after the refusal: the bucket refilled for at most this
    /// long during the run.
    pub elapsed: Duration,
}

/// Makes attempts (`attempt(n)`, `n` from 0) until one is refused (`Err`); panics if none of
/// `max` attempts is, which means there is no limit.
pub async fn until_refused<T, R, Fut>(
    max: usize,
    mut attempt: impl FnMut(usize) -> Fut,
) -> BucketRun<T, R>
where
    Fut: Future<Output = Result<T, R>>,
{
    let started = Instant::now();
    let mut admitted = Vec::new();
    for n in 0..max {
        match attempt(n).await {
            Ok(result) => admitted.push(result),
            Err(refused) => {
                return BucketRun {
                    admitted,
                    refused,
                    elapsed: started.elapsed(),
                }
            }
        }
    }
    panic!("{max} attempts and no refusal: no limit");
}

impl<T, R> BucketRun<T, R> {
    /// Asserts what a bucket of `burst` refilling `per_second` promises: at least the burst
    /// admitted (it starts full) and at most the burst plus the refill over
    /// [`elapsed`](Self::elapsed), rounded up.
    pub fn assert_bucket(&self, burst: u32, per_second: u32) {
        let refill = (self.elapsed.as_secs_f64() * f64::from(per_second)).ceil() as usize;
        let most = burst as usize + refill;
        let admitted = self.admitted.len();
        assert!(
            (burst as usize..=most).contains(&admitted),
            "{admitted} admitted in {:?} by a bucket of {burst} refilling {per_second}/s: \
             expected {burst} to {most}",
            self.elapsed
        );
    }
}
