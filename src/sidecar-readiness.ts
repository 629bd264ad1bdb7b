/**
 * Sidecar mode: someone else runs llama-server. Readiness is "its /health answers 200", probed on an
 * interval, so /-/ready can tell a load balancer or Kubernetes when to send traffic.
 */
import type { Logger } from './log.js';
import { ReadyWaiters, type Readiness } from './proxy/readiness.js';
import { probeOnce, type Health } from './supervisor/health.js';

export class SidecarReadiness implements Readiness {
  #health: Health = 'down';
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;
  readonly #waiters = new ReadyWaiters();

  constructor(
    private readonly origin: URL,
    private readonly opts: { intervalMs: number; timeoutMs: number; log: Logger },
  ) {}

  start(): void {
    this.#stopped = false;
    void this.#tick();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  async #tick(): Promise<void> {
    const health = await probeOnce(this.origin, this.opts.timeoutMs);
    if (this.#stopped) return;
    if (health !== this.#health) this.opts.log.info({ upstream: health }, 'upstream health changed');
    this.#health = health;
    if (health === 'ready') this.#waiters.wakeAll();
    // Until the first 200 it is probed every second, then at the configured interval.
    const next = health === 'ready' ? this.opts.intervalMs : Math.min(1000, this.opts.intervalMs);
    this.#timer = setTimeout(() => void this.#tick(), next);
    this.#timer.unref();
  }

  isReady(): boolean {
    return this.#health === 'ready';
  }

  state(): string {
    return this.#health;
  }

  waitReady(ms: number): Promise<boolean> {
    if (this.isReady()) return Promise.resolve(true);
    return this.#waiters.wait(ms, () => this.isReady());
  }
}
