/**
 * The load generator: its own process (forked by run.ts, jobs over IPC), undici for the HTTP side. It
 * reads the CPU and memory of the processes it loads itself, right around the measured part of a job,
 * so warm-up and IPC never land in the figures.
 *
 * A stream is checked by its byte count and its last event instead of being parsed, so the client stays
 * cheap; one that comes out wrong counts as failed, not as done.
 */
import net from 'node:net';
import { Pool, type Dispatcher } from 'undici';
import { cpuDelta, cpuOf, peakKb, resetPeak, rssKb, sampleRss, type CpuSample } from './proc.js';
import { DONE_EVENT, JSON_ANSWER, JSON_PATH, JSON_REQUEST_BODY, REQUEST_BODY, streamBodyBytes, streamPath, type StreamShape } from './shape.js';

/** Which processes to measure: the target's (one, or nginx's master and worker) and the fake upstream. */
export interface Watch {
  readonly target: readonly number[];
  readonly upstream: number;
}

export interface LoadJob {
  readonly kind: 'streams' | 'json';
  readonly origin: string;
  /** For 'streams'; ignored for 'json'. */
  readonly shape: StreamShape;
  /** Requests in flight at once, each on its own connection. */
  readonly concurrency: number;
  /**
   * A new connection for every request, as a client talking to llama-server directly needs for streams:
   * the server closes each one after the stream, and a request sent in that moment is lost.
   */
  readonly freshConnections: boolean;
  /** Go on starting requests until this much wall time has passed… */
  readonly minMs: number;
  /** …and until at least this many have finished. */
  readonly minRequests: number;
  /**
   * Spread the first requests of the workers evenly over this many ms (0: all at once). Paced streams
   * all last as long, so the spread holds from wave to wave: arrivals look like independent clients,
   * not like one burst of `concurrency` requests every stream length.
   */
  readonly staggerMs: number;
  readonly watch: Watch;
}

export interface SlowReaderJob {
  readonly kind: 'slow-reader';
  readonly origin: string;
  readonly shape: StreamShape;
  readonly durationMs: number;
  readonly sampleEveryMs: number;
  readonly watch: Watch;
}

export interface CpuReport {
  readonly target: CpuSample;
  readonly upstream: CpuSample;
  readonly loadgen: CpuSample;
}

export interface LoadResult {
  readonly kind: 'load';
  readonly ok: number;
  readonly failed: number;
  readonly failures: string[];
  readonly events: number;
  readonly bytes: number;
  readonly wallMs: number;
  /** Microseconds from dispatch to the first body byte, per finished request. */
  readonly ttfbUs: number[];
  /** Microseconds from dispatch to the end of the body. */
  readonly totalUs: number[];
  readonly cpu: CpuReport;
  /** Peak RSS of the target's processes (summed), KiB: VmHWM after a reset, else the sampled maximum. */
  readonly peakRssKb: number;
}

export interface SlowReaderResult {
  readonly kind: 'slow-reader';
  readonly bytesRead: number;
  /** [ms since start, target RSS KiB] */
  readonly rss: Array<[number, number]>;
}

type Job = LoadJob | SlowReaderJob;

const pools = new Map<string, Pool>();

function poolFor(origin: string, connections: number): Pool {
  const key = `${origin} ${connections}`;
  let pool = pools.get(key);
  if (pool === undefined) {
    pool = new Pool(origin, {
      connections,
      pipelining: 1,
      // Connections stay open between the cells of a run, whatever keep-alive the target announces.
      keepAliveTimeout: 120_000,
      keepAliveMaxTimeout: 120_000,
      keepAliveTimeoutThreshold: 0,
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
    });
    pools.set(key, pool);
  }
  return pool;
}

interface Outcome {
  ok: boolean;
  why?: string;
  bytes: number;
  ttfbUs: number;
  totalUs: number;
}

/** One request, measured with undici's handler hooks (no stream objects on the client side). */
class Measured implements Dispatcher.DispatchHandler {
  readonly #started = performance.now();
  readonly #expectBytes: number;
  readonly #expectEnd: Buffer;
  readonly #done: (o: Outcome) => void;
  #status = 0;
  #bytes = 0;
  #firstAt = 0;
  #last: Buffer = Buffer.alloc(0);
  #prev: Buffer = Buffer.alloc(0);

  constructor(expectBytes: number, expectEnd: Buffer, done: (o: Outcome) => void) {
    this.#expectBytes = expectBytes;
    this.#expectEnd = expectEnd;
    this.#done = done;
  }

  // undici tells the new handler API from the old one by this hook, so it must exist even when empty.
  onRequestStart(): void {}

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number): void {
    this.#status = statusCode;
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#firstAt === 0) this.#firstAt = performance.now();
    this.#bytes += chunk.length;
    this.#prev = this.#last;
    this.#last = chunk;
  }

  onResponseEnd(): void {
    const end = performance.now();
    const tail = this.#last.length >= this.#expectEnd.length ? this.#last : Buffer.concat([this.#prev, this.#last]);
    const endsWell = tail.subarray(tail.length - this.#expectEnd.length).equals(this.#expectEnd);
    let why: string | undefined;
    if (this.#status !== 200) why = `status ${this.#status}`;
    else if (this.#bytes !== this.#expectBytes) why = `${this.#bytes} bytes, expected ${this.#expectBytes}`;
    else if (!endsWell) why = 'wrong last bytes';
    this.#done({
      ok: why === undefined,
      ...(why !== undefined ? { why } : {}),
      bytes: this.#bytes,
      ttfbUs: (this.#firstAt - this.#started) * 1000,
      totalUs: (end - this.#started) * 1000,
    });
  }

  onResponseError(_c: Dispatcher.DispatchController | undefined, err: Error): void {
    this.#done({ ok: false, why: err.message, bytes: this.#bytes, ttfbUs: 0, totalUs: 0 });
  }
}

function once(pool: Pool, path: string, expectBytes: number, expectEnd: Buffer, fresh: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    pool.dispatch(
      {
        path,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: path === JSON_PATH ? JSON_REQUEST_BODY : REQUEST_BODY,
        reset: fresh,
      },
      new Measured(expectBytes, expectEnd, resolve),
    );
  });
}

function snapshot(watch: Watch): { target: CpuSample[]; upstream: CpuSample; loadgen: CpuSample } {
  return { target: watch.target.map(cpuOf), upstream: cpuOf(watch.upstream), loadgen: cpuOf(process.pid) };
}

function sumCpu(samples: CpuSample[]): CpuSample {
  return samples.reduce((a, b) => ({ statUs: a.statUs + b.statUs, schedUs: a.schedUs + b.schedUs }), { statUs: 0, schedUs: 0 });
}

async function runLoad(job: LoadJob): Promise<LoadResult> {
  const pool = poolFor(job.origin, job.concurrency);
  const json = job.kind === 'json';
  const path = json ? JSON_PATH : streamPath(job.shape);
  const expectBytes = json ? Buffer.byteLength(JSON_ANSWER) : streamBodyBytes(job.shape);
  const expectEnd = json ? Buffer.from(JSON_ANSWER.slice(-16)) : Buffer.from(DONE_EVENT);
  const events = json ? 1 : job.shape.events;

  // Warm-up, unmeasured: every connection of the pool open and used once.
  const warmShape: StreamShape = { ...job.shape, events: 4, paceMs: 0 };
  const warmPath = json ? JSON_PATH : streamPath(warmShape);
  const warmBytes = json ? expectBytes : streamBodyBytes(warmShape);
  const fresh = job.freshConnections;
  await Promise.all(Array.from({ length: job.concurrency }, () => once(pool, warmPath, warmBytes, expectEnd, fresh)));

  const peakReset = job.watch.target.every(resetPeak);
  const sampler = sampleRss(job.watch.target, 50);
  const before = snapshot(job.watch);
  const started = performance.now();
  const deadline = started + job.minMs;
  const ttfbUs: number[] = [];
  const totalUs: number[] = [];
  const failures: string[] = [];
  let ok = 0;
  let failed = 0;
  let bytes = 0;
  let begun = 0;
  const worker = async (index: number): Promise<void> => {
    if (job.staggerMs > 0) await new Promise((r) => setTimeout(r, (index * job.staggerMs) / job.concurrency));
    while (performance.now() < deadline || begun < job.minRequests) {
      begun++;
      const o = await once(pool, path, expectBytes, expectEnd, fresh);
      bytes += o.bytes;
      if (o.ok) {
        ok++;
        ttfbUs.push(o.ttfbUs);
        totalUs.push(o.totalUs);
      } else {
        failed++;
        if (failures.length < 5) failures.push(o.why ?? 'failed');
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, (_, i) => worker(i)));
  const wallMs = performance.now() - started;
  const after = snapshot(job.watch);
  const sampled = sampler.stop();
  const peakRssKb = peakReset
    ? job.watch.target.reduce((sum, pid) => sum + peakKb(pid), 0)
    : sampled.max.reduce((a, b) => a + b, 0);
  return {
    kind: 'load',
    ok,
    failed,
    failures,
    events: ok * events,
    bytes,
    wallMs,
    ttfbUs,
    totalUs,
    cpu: {
      target: cpuDelta(sumCpu(after.target), sumCpu(before.target)),
      upstream: cpuDelta(after.upstream, before.upstream),
      loadgen: cpuDelta(after.loadgen, before.loadgen),
    },
    peakRssKb,
  };
}

/**
 * A client that reads one byte per millisecond from a long unpaced stream, on a raw socket so that
 * nothing reads ahead beyond the socket's own buffer. The target's RSS is sampled meanwhile.
 */
function runSlowReader(job: SlowReaderJob): Promise<SlowReaderResult> {
  return new Promise((resolve, reject) => {
    const url = new URL(job.origin);
    const body = Buffer.from(REQUEST_BODY);
    const socket = net.connect(Number(url.port), url.hostname);
    const rss: Array<[number, number]> = [];
    let bytesRead = 0;
    const started = performance.now();
    const sample = (): void => {
      const kb = job.watch.target.reduce((sum, pid) => sum + rssKb(pid), 0);
      rss.push([Math.round(performance.now() - started), kb]);
    };
    socket.on('error', reject);
    socket.on('connect', () => {
      socket.pause();
      socket.write(
        `POST ${streamPath(job.shape)} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\n\r\n`,
      );
      socket.write(body);
      sample();
      const reader = setInterval(() => {
        const b = socket.read(1) as Buffer | null;
        if (b !== null) bytesRead += b.length;
      }, 1);
      const sampler = setInterval(sample, job.sampleEveryMs);
      setTimeout(() => {
        clearInterval(reader);
        clearInterval(sampler);
        sample();
        socket.destroy();
        resolve({ kind: 'slow-reader', bytesRead, rss });
      }, job.durationMs);
    });
  });
}

process.on('message', (msg: Job | { kind: 'exit' }) => {
  const send = (m: unknown): void => void process.send?.(m);
  if (msg.kind === 'exit') {
    void Promise.all([...pools.values()].map((p) => p.close())).finally(() => process.exit(0));
    return;
  }
  const run = msg.kind === 'slow-reader' ? runSlowReader(msg) : runLoad(msg);
  run.then(send, (err: unknown) => send({ kind: 'error', message: err instanceof Error ? err.message : String(err) }));
});
process.on('disconnect', () => process.exit(0));
process.send?.({ kind: 'ready' });
