/**
 * Retries with exponential backoff and full jitter, bounded in attempts and in total time: one
 * policy and one helper for requests, download resumes and upload restarts.
 * What is retried: failures marked retryable (RegistryError.retryable: connection resets, refusals
 * and stalls, 5xx, 408 and 429, honouring Retry-After) and results the caller says are worth another
 * try. Never: 4xx auth errors, TLS errors, anything else.
 */
import { KilnError } from '../errors.js';
import { isRetryable, RegistryError } from './errors.js';

/** How requests are retried: attempts, backoff delays and a time budget. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  /** First backoff; doubles each time, capped at maxDelayMs. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** No new attempt starts after this long since the first (since the last progress, for downloads). */
  budgetMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  attempts: 5,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
  budgetMs: 120_000,
};

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505);
}

/** Delay before attempt `n` (1 = first retry): full jitter over an exponential ceiling, or what the peer asked for. */
export function backoffDelay(policy: RetryPolicy, n: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxDelayMs * 3);
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (n - 1));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** `Retry-After` is seconds or an HTTP date; in milliseconds. */
export function parseRetryAfter(value: string | undefined): number | undefined {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/**
 * Counts failures against a policy: how long to wait before the next try, or that the tries are
 * spent. `progress()` starts the count and the time budget again (a download that got bytes).
 */
export class RetryBudget {
  private failures = 0;
  private total = 0;
  private since = Date.now();

  constructor(
    private readonly policy: RetryPolicy,
    /** Tries in all, progress or not (a download's resumes). */
    private readonly maxTotal = Number.POSITIVE_INFINITY,
  ) {}

  /** Failures so far, in all. */
  get count(): number {
    return this.total;
  }

  /** Counts a failure: the delay before the next try, or undefined when the policy is spent. */
  next(retryAfterMs?: number): number | undefined {
    this.failures++;
    this.total++;
    const delay = backoffDelay(this.policy, this.failures, retryAfterMs);
    if (
      this.failures >= this.policy.attempts ||
      this.total >= this.maxTotal ||
      Date.now() - this.since + delay > this.policy.budgetMs
    )
      return undefined;
    return delay;
  }

  progress(): void {
    this.failures = 0;
    this.since = Date.now();
  }
}

export interface RetryOptions<T> {
  signal?: AbortSignal;
  /** Whether a failure may be tried again; default: a RegistryError marked retryable. */
  retryable?: (err: unknown) => boolean;
  /**
   * A result worth another try (a response with a retryable status): its Retry-After, or
   * `undefined` to take the result. Once the policy is spent such a result is returned as it is.
   */
  again?: (value: T) => { retryAfterMs?: number } | undefined;
  /** Releases a result that is not returned (a response body to drain). */
  discard?: (value: T) => void;
  /** Told before each wait. */
  onRetry?: (retry: { attempt: number; delayMs: number; error?: unknown; result?: T }) => void;
}

/**
 * Runs `fn` until it succeeds, fails in a way that is not retryable, or the policy is spent
 * (attempts, time budget); then throws the last failure (or returns the last result `again` wanted
 * retried). Waits are cut short by `signal`.
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions<T> = {},
): Promise<T> {
  const budget = new RetryBudget(policy);
  const retryable = options.retryable ?? isRetryable;
  for (let attempt = 1; ; attempt++) {
    let delay: number | undefined;
    let result: T | undefined;
    let error: unknown;
    try {
      result = await fn(attempt);
      const wanted = options.again?.(result);
      if (wanted === undefined) return result;
      delay = budget.next(wanted.retryAfterMs);
      if (delay === undefined) return result;
      options.discard?.(result);
    } catch (err) {
      if (!retryable(err)) throw err;
      error = err;
      delay = budget.next(err instanceof RegistryError ? err.retryAfterMs : undefined);
      if (delay === undefined) throw err;
    }
    options.onRetry?.({ attempt, delayMs: delay, ...(error === undefined ? { result } : { error }) });
    await sleep(delay, options.signal);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function abortError(signal: AbortSignal): KilnError {
  return new KilnError('E_ABORTED', 'operation aborted', { cause: signal.reason });
}
