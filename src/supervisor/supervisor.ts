/**
 * The state machine of the supervised llama-server. This class is the only writer of its state: it
 * starts the child, watches its health, restarts it with backoff, gives up on a crash loop and stops it
 * on shutdown. The proxy asks it one question, through Readiness: can requests go through now?
 */
import type { Logger } from '../log.js';
import { ReadyWaiters, type Readiness } from '../proxy/readiness.js';
import { LlamaServerProcess, type ChildExit } from './child-process.js';
import { probeOnce } from './health.js';
import { canMove, type ChildState } from './states.js';
import { RestartBudget, type BackoffPolicy } from './backoff.js';
import { argsForLog } from './command-line.js';

export interface SupervisorOptions {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
  /** Where the child listens (loopback, private port). */
  readonly origin: URL;
  readonly log: Logger;
  readonly startupTimeoutMs: number;
  readonly healthIntervalMs: number;
  readonly healthTimeoutMs: number;
  readonly healthFailureThreshold: number;
  readonly stopGraceMs: number;
  readonly backoff: BackoffPolicy;
  /** Bytes relayed so far; a health check that times out while this moves is not a failure. */
  readonly progress: () => number;
  /** Called once when restarting stops for good. */
  readonly onCrashLoop: (reason: string) => void;
}

export type RestartReason = 'crashed' | 'unhealthy' | 'startup-timeout' | 'exited-during-startup';

/** First probe this long after spawn: a tiny model is ready in tens of ms, a real one in seconds. */
const FIRST_PROBE_MS = 250;
const STARTUP_PROBE_MS = 1000;

export class Supervisor implements Readiness {
  readonly #opts: SupervisorOptions;
  readonly #budget: RestartBudget;
  #state: ChildState = 'starting';
  #child: LlamaServerProcess | undefined;
  #timer: NodeJS.Timeout | undefined;
  #readySince: number | undefined;
  #failedChecks = 0;
  readonly #waiters = new ReadyWaiters();
  #restarts: Partial<Record<RestartReason, number>> = {};
  /** Bumped per spawn, so callbacks of a previous child are ignored. */
  #generation = 0;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#budget = new RestartBudget(opts.backoff);
  }

  // ---- Readiness ------------------------------------------------------------------------------------

  isReady(): boolean {
    return this.#state === 'ready';
  }

  state(): ChildState {
    return this.#state;
  }

  waitReady(ms: number): Promise<boolean> {
    if (this.isReady()) return Promise.resolve(true);
    if (this.#state === 'crash-loop' || this.#state === 'stopping' || this.#state === 'stopped') return Promise.resolve(false);
    return this.#waiters.wait(ms, () => this.isReady());
  }

  get restarts(): Readonly<Partial<Record<RestartReason, number>>> {
    return this.#restarts;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  // ---- lifecycle ------------------------------------------------------------------------------------

  start(): void {
    this.#spawn();
  }

  /** Stops llama-server: SIGTERM to its group, SIGKILL after the grace time. Idempotent. */
  async stop(): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      await this.#child?.exited;
      return;
    }
    this.#move('stopping');
    clearTimeout(this.#timer);
    const child = this.#child;
    if (child !== undefined) {
      const exit = await child.stop(this.#opts.stopGraceMs);
      this.#opts.log.info({ code: exit.code, signal: exit.signal }, 'llama-server stopped');
    }
    this.#move('stopped');
  }

  #spawn(): void {
    const o = this.#opts;
    const generation = ++this.#generation;
    this.#failedChecks = 0;
    if (this.#state !== 'starting') this.#move('starting');
    const child = new LlamaServerProcess(o.command, o.args, o.env, o.log);
    this.#child = child;
    o.log.info({ pid: child.pid, command: o.command, args: argsForLog(o.args) }, 'llama-server starting');
    void child.exited.then((exit) => {
      if (generation === this.#generation) this.#exited(exit);
    });
    const deadline = Date.now() + o.startupTimeoutMs;
    const probe = async (): Promise<void> => {
      if (generation !== this.#generation || this.#state !== 'starting') return;
      const health = await probeOnce(o.origin, Math.min(o.healthTimeoutMs, STARTUP_PROBE_MS * 5));
      if (generation !== this.#generation || this.#state !== 'starting') return;
      if (health === 'ready') {
        this.#becameReady();
      } else if (Date.now() >= deadline) {
        this.#fail('startup-timeout', `llama-server did not become ready within ${o.startupTimeoutMs} ms`);
      } else {
        this.#timer = setTimeout(() => void probe(), STARTUP_PROBE_MS);
      }
    };
    this.#timer = setTimeout(() => void probe(), FIRST_PROBE_MS);
  }

  #becameReady(): void {
    this.#move('ready');
    this.#readySince = Date.now();
    this.#opts.log.info({ pid: this.#child?.pid }, 'llama-server ready');
    this.#waiters.wakeAll();
    this.#scheduleHealthCheck();
  }

  #scheduleHealthCheck(): void {
    const o = this.#opts;
    const generation = this.#generation;
    this.#timer = setTimeout(async () => {
      if (generation !== this.#generation || this.#state !== 'ready') return;
      const before = o.progress();
      const health = await probeOnce(o.origin, o.healthTimeoutMs);
      if (generation !== this.#generation || this.#state !== 'ready') return;
      // A busy CPU server may be slow to answer /health while it streams; that is not sickness.
      const busy = health === 'down' && o.progress() !== before;
      if (health === 'ready' || busy) {
        if (this.#failedChecks > 0) o.log.info({ afterFailures: this.#failedChecks }, 'llama-server healthy again');
        this.#failedChecks = 0;
      } else {
        this.#failedChecks++;
        o.log.warn({ health, failures: this.#failedChecks }, 'llama-server health check failed');
        if (this.#failedChecks >= o.healthFailureThreshold) {
          this.#fail('unhealthy', `${this.#failedChecks} health checks failed in a row`);
          return;
        }
      }
      this.#scheduleHealthCheck();
    }, o.healthIntervalMs);
  }

  #exited(exit: ChildExit): void {
    if (this.#state === 'stopping' || this.#state === 'stopped') return;
    const reason: RestartReason = this.#state === 'starting' ? 'exited-during-startup' : 'crashed';
    const how = exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
    this.#fail(reason, `llama-server exited with ${how}`, exit);
  }

  /** Every unplanned end of a child comes here: kill what is left, then restart later or give up. */
  #fail(reason: RestartReason, message: string, exit?: ChildExit): void {
    const o = this.#opts;
    clearTimeout(this.#timer);
    const generation = ++this.#generation; // callbacks of the failed child are stale from here on
    const child = this.#child;
    const delay = this.#budget.fail(Date.now(), this.#state === 'ready' ? this.#readySince : undefined);
    this.#readySince = undefined;
    const details = { reason, lastLines: exit?.lastLines, failuresInWindow: this.#budget.failuresInWindow };
    if (delay === undefined) {
      this.#move('crash-loop');
      o.log.error(details, `${message}; crash loop: not restarting`);
      this.#waiters.wakeAll();
      void child?.stop(o.stopGraceMs);
      o.onCrashLoop(`${message} (${this.#budget.failuresInWindow} failures in ${o.backoff.windowMs} ms)`);
      return;
    }
    this.#move('restarting');
    this.#restarts[reason] = (this.#restarts[reason] ?? 0) + 1; // a crash loop is not a restart
    o.log.warn({ ...details, delayMs: delay }, `${message}; restarting`);
    void (async () => {
      if (child !== undefined) await child.stop(o.stopGraceMs);
      // stop() may have come while the old child was stopping; a delay timer set now would hold the exit.
      if (generation !== this.#generation || this.#state !== 'restarting') return;
      await new Promise((r) => (this.#timer = setTimeout(r, delay)));
      if (generation === this.#generation && this.#state === 'restarting') this.#spawn();
    })();
  }

  #move(to: ChildState): void {
    if (!canMove(this.#state, to)) throw new Error(`supervisor: cannot move from ${this.#state} to ${to}`);
    this.#state = to;
  }
}
