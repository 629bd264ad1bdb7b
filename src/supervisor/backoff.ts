/**
 * When to try again after llama-server failed, and when to stop trying: exponential backoff with
 * jitter, reset after a long healthy run, and a cap on failures within a window (a crash loop).
 */
export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  /** Healthy this long and the next failure starts the backoff from the beginning again. */
  readonly resetAfterMs: number;
  readonly maxFailures: number;
  readonly windowMs: number;
}

export class RestartBudget {
  #failures: number[] = [];
  /** Failures since the last long healthy run; drives the delay. */
  #streak = 0;

  constructor(
    private readonly policy: BackoffPolicy,
    private readonly random: () => number = Math.random,
  ) {}

  /** Records a failure at `now`; returns the delay before the next start, or undefined for a crash loop. */
  fail(now: number, healthySince: number | undefined): number | undefined {
    const p = this.policy;
    if (healthySince !== undefined && now - healthySince >= p.resetAfterMs) this.#streak = 0;
    this.#failures = this.#failures.filter((t) => now - t < p.windowMs);
    this.#failures.push(now);
    if (this.#failures.length >= p.maxFailures) return undefined;
    const base = Math.min(p.maxMs, p.initialMs * 2 ** this.#streak);
    this.#streak++;
    // ±20 % so that a fleet of proxies does not restart in step; maxMs stays the longest delay
    return Math.min(p.maxMs, Math.round(base * (0.8 + 0.4 * this.random())));
  }

  get failuresInWindow(): number {
    return this.#failures.length;
  }
}
