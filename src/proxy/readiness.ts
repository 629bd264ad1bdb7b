/** What the server asks of whoever knows whether llama-server can take requests. */
export interface Readiness {
  isReady(): boolean;
  /** Resolves true as soon as the upstream is ready, false when `ms` pass first. */
  waitReady(ms: number): Promise<boolean>;
  /** A word for logs, errors and /-/ready: loading, ready, restarting, crash-loop, … */
  state(): string;
}

/** Requests parked until the upstream's state changes, each with its own deadline. */
export class ReadyWaiters {
  readonly #wakers = new Set<() => void>();

  /** Resolves with `isReady()` at the first wakeAll() or after `ms`, whichever comes first. */
  wait(ms: number, isReady: () => boolean): Promise<boolean> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        resolve(isReady());
      };
      const timer = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }

  /** The state changed: every parked request looks again (ready, or given up for good). */
  wakeAll(): void {
    for (const wake of this.#wakers) wake();
  }
}
