/** What the server asks of whoever knows whether llama-server can take requests. */
export interface Readiness {
  isReady(): boolean;
  /** Resolves true as soon as the upstream is ready, false when `ms` pass first. */
  waitReady(ms: number): Promise<boolean>;
  /** A word for logs, errors and /-/ready: loading, ready, restarting, crash-loop, … */
  state(): string;
}

/** For tests and for a proxy whose upstream is someone else's business. */
export const ALWAYS_READY: Readiness = {
  isReady: () => true,
  waitReady: () => Promise.resolve(true),
  state: () => 'ready',
};
