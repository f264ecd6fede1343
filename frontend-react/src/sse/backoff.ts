/** Exponential backoff with jitter, for reconnects the browser does not do itself. */
export interface BackoffOptions {
  /** Delay before the first retry, in ms. Default 1000. */
  initialMs: number;
  /** Upper bound of the delay, in ms. Default 30000. */
  maxMs: number;
  /** Growth per failure in a row. Default 2. */
  factor: number;
  /**
   * Share of the delay that is random, 0..1. Default 0.5: the wait is a random point in the upper
   * half of the exponential delay, so clients dropped together do not come back together.
   */
  jitter: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 1000, maxMs: 30_000, factor: 2, jitter: 0.5 };

/**
 * The wait before retry number `attempt` (1 for the first retry after a failure):
 * `min(maxMs, initialMs * factor^(attempt-1))`, less up to `jitter` of it at random.
 * `random` returns 0..1 (`Math.random`); 0 gives the full delay.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const n = Math.max(1, attempt);
  const base = Math.min(opts.maxMs, opts.initialMs * opts.factor ** (n - 1));
  const jitter = Math.min(1, Math.max(0, opts.jitter));
  return Math.round(base * (1 - jitter * random()));
}
