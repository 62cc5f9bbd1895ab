/**
 * Retrying within a deadline: exponential backoff with full jitter, a wait that ends early when
 * the deadline's signal aborts, and never a wait that would end past the deadline.
 */

export interface BackoffOptions {
  /** The first retry waits up to this long (full jitter: a uniform pick in [0, delay]). */
  readonly baseDelayMs: number;
  /** The cap of the exponential growth. */
  readonly maxDelayMs: number;
}

/** The wait before retry number `attempt` (1 for the first retry): uniform in [0, min(max, base·2^(attempt-1))]. */
export function backoffDelayMs(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxDelayMs, options.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

/** Waits `ms`; rejects with the signal's reason as soon as it aborts. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
