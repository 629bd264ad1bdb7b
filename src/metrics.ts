/**
 * Prometheus metrics at /-/metrics. Per-request figures come from the request record written when a
 * response is over (one place, no work per event); states are read when scraped.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RequestRecord } from './log.js';
import { guardedDialect, pathOf } from './routes.js';

const PREFIX = 'llama_status_proxy_';

export interface MetricsSources {
  /** Guarded requests in flight. */
  inFlight(): number;
  /** The upstream's state word: ready, loading, down, starting, restarting, crash-loop, … */
  upstreamState(): string;
  upstreamReady(): boolean;
  /** Supervised mode: restarts so far, by reason. */
  restarts?(): Readonly<Partial<Record<string, number>>>;
  /** Spare upstream connections so far, by outcome (when spares are on). */
  spares?(): Readonly<Record<string, number>>;
}

/** A counter whose counts another part keeps (the supervisor, the spare connections): copied at each scrape. */
function mirroredCounter(
  registers: Registry[],
  name: string,
  help: string,
  label: string,
  counts: () => Readonly<Partial<Record<string, number>>>,
): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers,
    collect() {
      this.reset();
      for (const [value, n] of Object.entries(counts())) if (n !== undefined) this.inc({ [label]: value }, n);
    },
  });
}

const UPSTREAM_STATES = ['ready', 'loading', 'down', 'starting', 'restarting', 'crash-loop', 'stopping', 'stopped'];

export class Metrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'route' | 'method' | 'code'>;
  readonly #duration: Histogram<'route'>;
  readonly #firstEvent: Histogram;
  readonly #rewritten: Counter<'upstream_type' | 'status'>;
  readonly #inBand: Counter<'phase'>;
  readonly #errorFrames: Counter<'code'>;
  readonly #aborts: Counter;

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.#requests = new Counter({
      name: `${PREFIX}http_requests_total`,
      help: 'Requests answered, by route, method and the status the client got (499: the client left first).',
      labelNames: ['route', 'method', 'code'],
      registers,
    });
    this.#duration = new Histogram({
      name: `${PREFIX}request_duration_seconds`,
      help: 'Time from request to the end of the response.',
      labelNames: ['route'],
      buckets: [0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    this.#firstEvent = new Histogram({
      name: `${PREFIX}first_event_seconds`,
      help: "Time from llama-server's response headers to the event that decided the outcome.",
      // CPU prefill of a long prompt takes minutes; the upper buckets are for that.
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.#rewritten = new Counter({
      name: `${PREFIX}stream_errors_rewritten_total`,
      help: 'In-band errors turned into a real status, by the upstream error type and the status sent.',
      labelNames: ['upstream_type', 'status'],
      registers,
    });
    this.#inBand = new Counter({
      name: `${PREFIX}stream_errors_inband_total`,
      help: 'Errors the upstream sent inside a stream after the status was committed.',
      labelNames: ['phase'],
      registers,
    });
    this.#errorFrames = new Counter({
      name: `${PREFIX}stream_error_frames_total`,
      help: 'Error frames the proxy wrote into a started stream (upstream stopped or broke off, shutdown).',
      labelNames: ['code'],
      registers,
    });
    this.#aborts = new Counter({
      name: `${PREFIX}client_aborts_total`,
      help: 'Requests whose client left before the response was over.',
      registers,
    });
    new Gauge({
      name: `${PREFIX}inflight_streams`,
      help: 'Guarded (completion) requests in flight.',
      registers,
      collect() {
        this.set(sources.inFlight());
      },
    });
    new Gauge({
      name: `${PREFIX}upstream_up`,
      help: '1 when llama-server is ready for requests.',
      registers,
      collect() {
        this.set(sources.upstreamReady() ? 1 : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}upstream_state`,
      help: "llama-server's state: 1 for the current one.",
      labelNames: ['state'],
      registers,
      collect() {
        const now = sources.upstreamState();
        for (const state of new Set([...UPSTREAM_STATES, now])) this.set({ state }, state === now ? 1 : 0);
      },
    });
    if (sources.restarts) {
      mirroredCounter(registers, `${PREFIX}upstream_restarts_total`, 'Restarts of the supervised llama-server, by reason.', 'reason', sources.restarts);
    }
    if (sources.spares) {
      const help = 'Upstream connections opened ahead of the next stream, and what became of them: taken, expired unused, dropped by the server.';
      mirroredCounter(registers, `${PREFIX}upstream_spare_connections_total`, help, 'outcome', sources.spares);
    }
    collectDefaultMetrics({ register: this.registry });
  }

  /** Called once per request, when its response is over. */
  observe(record: RequestRecord): void {
    const route = guardedDialect(record.method, record.path) !== undefined ? pathOf(record.path) : 'other';
    this.#requests.inc({ route, method: record.method, code: String(record.status) });
    this.#duration.observe({ route }, record.durationMs / 1000);
    if (record.decideMs !== undefined) this.#firstEvent.observe(record.decideMs / 1000);
    if (record.rewritten) this.#rewritten.inc({ upstream_type: record.errorType ?? 'unknown', status: String(record.status) });
    if (record.inBandAfterCommit) this.#inBand.inc({ phase: 'after_commit' });
    if (record.midStreamError !== undefined) this.#errorFrames.inc({ code: record.midStreamError });
    if (record.clientAbort) this.#aborts.inc();
  }
}
