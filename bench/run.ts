/**
 * `npm run bench`: llama-status-proxy against no proxy, a minimal Node pipe proxy and (when installed)
 * nginx, in one run, interleaved A B C A B C… so drift of a shared machine hits all alike.
 *
 * Processes: this orchestrator (idle while measuring), the fake upstream, each target, and the load
 * generator, which measures CPU and memory of the processes it loads. The Markdown report goes to
 * stdout, progress to stderr, every figure to a JSON file under .cache/bench/.
 *
 * Options (all optional):
 *   --targets direct,proxy,pipe,nginx,http-proxy-3   which targets (default: the first four; nginx if found)
 *   --variant 'name=[node flags] path/to/bin.js [args]'  another build or setting of llama-status-proxy
 *   --rounds 3 --cell-ms 1500                        rounds of the main scenarios; wall time per cell
 *   --sections main,memory,scaling,backpressure,hold,startup  which parts to run
 *   --scenarios 1x2000,32x200,64x50p,json,ttfb,ttfb-ka which main scenarios
 *   --log-level warn                                 llama-status-proxy's log level
 *   --wait-quiet                                     first wait (≤ 20 min) for a 1-minute load average < 0.3
 *   --quick                                          short cells and one round, for trying things out
 *   --json file                                      where to write the figures
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import type { LoadJob, LoadResult, SlowReaderJob, SlowReaderResult, Watch } from './loadgen.js';
import { findNginx, startNginx } from './nginx.js';
import { fmt, percentile, sortedCopy, table } from './stats.js';
import { rssKb } from './proc.js';
import type { StreamShape } from './shape.js';
import { freePort } from '../src/free-port.js';
import { holdCpuUsPerStream } from './hold-cost.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

// ---- options ----------------------------------------------------------------------------------------

const { values: opts } = parseArgs({
  options: {
    targets: { type: 'string' },
    variant: { type: 'string', multiple: true, default: [] },
    rounds: { type: 'string' },
    'cell-ms': { type: 'string' },
    sections: { type: 'string', default: 'main,memory,scaling,backpressure,hold,startup' },
    scenarios: { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
    'wait-quiet': { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const quick = opts.quick;
const rounds = Number(opts.rounds ?? (quick ? 1 : 3));
const cellMs = Number(opts['cell-ms'] ?? (quick ? 500 : 1500));
const sections = new Set((opts.sections ?? '').split(','));

function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

// ---- scenarios --------------------------------------------------------------------------------------

interface Scenario {
  readonly id: string;
  readonly title: string;
  readonly kind: 'streams' | 'json';
  readonly shape: StreamShape;
  readonly concurrency: number;
  readonly minRequests: number;
}

const SMALL = 250;
/** Wall time per scenario and target of the unrecorded warm-up round. */
const WARM_UP_MS = 300;
const LARGE = 4096;

const SCENARIOS: readonly Scenario[] = [
  { id: '1x2000', title: '1 stream × 2000 events, unpaced', kind: 'streams', shape: { events: 2000, size: SMALL, paceMs: 0 }, concurrency: 1, minRequests: 1 },
  { id: '32x200', title: '32 concurrent streams × 200 events, unpaced', kind: 'streams', shape: { events: 200, size: SMALL, paceMs: 0 }, concurrency: 32, minRequests: 32 },
  { id: '64x50p', title: '64 concurrent streams × 50 events, 5 ms per token (starts spread over 250 ms)', kind: 'streams', shape: { events: 50, size: SMALL, paceMs: 5 }, concurrency: 64, minRequests: 64 },
  { id: 'json', title: 'sequential non-stream requests (at least 200)', kind: 'json', shape: { events: 1, size: SMALL, paceMs: 0 }, concurrency: 1, minRequests: 200 },
  { id: 'ttfb', title: 'one connection, sequential short streams (4 events): time to first byte', kind: 'streams', shape: { events: 4, size: SMALL, paceMs: 0 }, concurrency: 1, minRequests: 200 },
  {
    id: 'ttfb-ka',
    title: 'the same, from an upstream that keeps connections open after a stream (llama-server does not)',
    kind: 'streams',
    shape: { events: 4, size: SMALL, paceMs: 0, keepAlive: true },
    concurrency: 1,
    minRequests: 200,
  },
];

/**
 * Only a client talking to llama-server itself opens a connection per stream (the server closes it after
 * the stream); in front of a proxy it keeps one, and the proxy deals with the upstream's connections.
 */
function freshConnections(target: Target, kind: Scenario['kind'], shape: StreamShape): boolean {
  return target.kind === 'direct' && kind === 'streams' && shape.keepAlive !== true;
}

/** Paced streams start spread over one stream's length, as independent clients would; unpaced ones at once. */
function staggerOf(shape: StreamShape): number {
  return shape.paceMs > 0 ? shape.events * shape.paceMs : 0;
}

/**
 * Wall time of the memory cell: long enough for the old generation to go through a few full GCs, so the
 * peak is the steady state's and not only the first seconds' (which a 1.5 s cell showed ~6 MiB lower).
 */
const MEMORY_MS = quick ? 1000 : 8000;

const SCALING_CONCURRENCY = quick ? [1, 16, 64] : [1, 16, 64, 256];
const SCALING_SHAPE = (size: number): StreamShape => ({ events: 100, size, paceMs: 5 });

// ---- processes --------------------------------------------------------------------------------------

interface Target {
  readonly name: string;
  readonly kind: 'direct' | 'lsp' | 'pipe' | 'http-proxy-3' | 'nginx';
  readonly origin: string;
  /** The processes whose CPU and memory count for this target (none for direct). */
  readonly pids: number[];
  stop(): Promise<void>;
}

/** A Node child of ours that reports its port over IPC. */
function forkServer(script: string, args: string[]): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(join(here, script), args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${script} exited (${code}) before listening`)));
    child.once('message', (m: { port: number }) => resolve({ child, port: m.port }));
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function waitLive(origin: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`llama-status-proxy exited (${child.exitCode}): ${stderr()}`);
    try {
      const res = await request(`${origin}/-/live`);
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`llama-status-proxy did not come up: ${stderr()}`);
}

/** The built CLI, as users run it, with the port picked here because --log-level warn hides the 'listening' line. */
async function startLsp(name: string, bin: string, extra: string[], upstream: string, nodeFlags: string[] = []): Promise<Target> {
  const port = await freePort();
  const args = [...nodeFlags, bin, '--upstream', upstream, '--host', '127.0.0.1', '--port', String(port), '--log-level', opts['log-level'] ?? 'warn', ...extra];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (t: string) => {
    stderr += t;
    process.stderr.write(t); // crashes, and diagnostics of a variant started with --import
  });
  const origin = `http://127.0.0.1:${port}`;
  await waitLive(origin, child, () => stderr);
  return { name, kind: 'lsp', origin, pids: [child.pid ?? 0], stop: () => stopChild(child) };
}

/** Start-up runs of the CLI; the median and the slowest are reported. */
const STARTUP_RUNS = 7;

/**
 * Milliseconds from spawning the CLI (sidecar mode, as users start it) to its 'listening' log line, i.e.
 * until it accepts requests. Node's own start-up is included; that is what a restart costs.
 */
async function startupMs(bin: string, upstream: string): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [bin, '--upstream', upstream, '--host', '127.0.0.1', '--port', String(port), '--log-level', 'info'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  try {
    return await new Promise<number>((resolve, reject) => {
      let out = '';
      child.stdout?.setEncoding('utf8').on('data', (t: string) => {
        out += t;
        if (out.includes('"msg":"listening"')) resolve(performance.now() - started);
      });
      child.once('exit', (code) => reject(new Error(`llama-status-proxy exited (${code}) before listening`)));
    });
  } finally {
    await stopChild(child);
  }
}

interface TargetSpec {
  readonly name: string;
  /** Starts one instance; called again for a fresh process in the memory section. */
  start(): Promise<Target>;
}

function targetSpecs(upstreamOrigin: string, upstreamPort: number, nginx: { version?: string }): TargetSpec[] {
  const nginxBin = findNginx();
  const wanted = (opts.targets ?? `direct,proxy,pipe${nginxBin ? ',nginx' : ''}`).split(',').filter(Boolean);
  const specs: TargetSpec[] = [];
  for (const w of wanted) {
    if (w === 'direct') {
      specs.push({ name: 'direct', start: async () => ({ name: 'direct', kind: 'direct', origin: upstreamOrigin, pids: [], stop: async () => undefined }) });
    } else if (w === 'proxy') {
      const name = 'llama-status-proxy';
      specs.push({ name, start: () => startLsp(name, join(root, 'bin', 'llama-status-proxy.js'), [], upstreamOrigin) });
    } else if (w === 'pipe' || w === 'http-proxy-3') {
      const script = w === 'pipe' ? 'pipe-proxy.js' : 'http-proxy-3-proxy.js';
      const name = w === 'pipe' ? 'node pipe' : 'http-proxy-3';
      specs.push({
        name,
        async start() {
          const { child, port } = await forkServer(script, [upstreamOrigin]);
          return { name, kind: w, origin: `http://127.0.0.1:${port}`, pids: [child.pid ?? 0], stop: () => stopChild(child) };
        },
      });
    } else if (w === 'nginx') {
      if (nginxBin === undefined) {
        progress('nginx: not installed, skipped');
        continue;
      }
      specs.push({
        name: 'nginx',
        async start() {
          const ng = await startNginx(nginxBin, await freePort(), upstreamPort);
          nginx.version = ng.version;
          return { name: 'nginx', kind: 'nginx', origin: ng.origin, pids: ng.pids, stop: () => ng.stop() };
        },
      });
    } else throw new Error(`unknown target ${w}`);
  }
  for (const v of opts.variant ?? []) {
    // name=[node flags…] path/to/bin.js [proxy args…]
    const eq = v.indexOf('=');
    const name = v.slice(0, eq);
    const words = v.slice(eq + 1).split(' ').filter(Boolean);
    const binAt = words.findIndex((w) => !w.startsWith('-'));
    const bin = words[binAt] ?? '';
    specs.push({ name, start: () => startLsp(name, bin, words.slice(binAt + 1), upstreamOrigin, words.slice(0, binAt)) });
  }
  return specs;
}

class LoadGenerator {
  readonly #child: ChildProcess;
  readonly ready: Promise<void>;

  constructor() {
    this.#child = fork(join(here, 'loadgen.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.ready = new Promise((resolve) => this.#child.once('message', () => resolve()));
  }

  run<R extends LoadResult | SlowReaderResult>(job: LoadJob | SlowReaderJob): Promise<R> {
    return new Promise((resolve, reject) => {
      this.#child.once('message', (m: R | { kind: 'error'; message: string }) => {
        if (m.kind === 'error') reject(new Error(m.message));
        else resolve(m);
      });
      this.#child.send(job);
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise((r) => this.#child.once('exit', r));
    this.#child.send({ kind: 'exit' });
    await exited;
  }
}

// ---- the machine ------------------------------------------------------------------------------------

function loadavg(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** Waits for a quiet machine: the 1-minute load average below 0.3 over at least 20 s, for 20 min at most. */
async function waitQuiet(): Promise<string> {
  const started = Date.now();
  let quietSince: number | undefined;
  while (Date.now() - started < 20 * 60_000) {
    const load = loadavg();
    if (load < 0.3) {
      quietSince ??= Date.now();
      if (Date.now() - quietSince >= 20_000) return `quiet after ${Math.round((Date.now() - started) / 1000)} s (load ${load})`;
    } else quietSince = undefined;
    progress(`waiting for a quiet machine: load ${load}`);
    await new Promise((r) => setTimeout(r, quietSince === undefined ? 30_000 : 5_000));
  }
  return `not quiet after 20 min (load ${loadavg()}); ran anyway`;
}

function machine(): Record<string, string> {
  const meminfo = readFileSync('/proc/meminfo', 'utf8');
  const memKb = Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1] ?? totalmem() / 1024);
  return {
    cpus: String(cpus().length),
    'cpu model': cpus()[0]?.model ?? '?',
    memory: `${fmt(memKb / 1024 / 1024, 1)} GiB`,
    node: process.version,
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
  };
}

// ---- measuring --------------------------------------------------------------------------------------

interface Cell {
  readonly round: number;
  readonly scenario: string;
  readonly target: string;
  readonly result: LoadResult;
}

function watchOf(target: Target, upstreamPid: number): Watch {
  return { target: target.pids, upstream: upstreamPid };
}

function describe(r: LoadResult, target: Target): string {
  const perEvent = target.pids.length > 0 ? `${fmt(r.cpu.target.statUs / Math.max(1, r.events), 2)} µs/ev` : 'no proxy';
  const failed = r.failed > 0 ? ` FAILED ${r.failed}: ${r.failures.join('; ')}` : '';
  return `${r.ok} req, ${fmt((r.events * 1000) / r.wallMs, 0)} ev/s, ${perEvent}, peak ${fmt(r.peakRssKb / 1024)} MiB${failed}`;
}

interface Summary {
  readonly target: string;
  readonly ok: number;
  readonly failed: number;
  readonly streamsPerS: number;
  readonly eventsPerS: number;
  readonly ttfbP50Ms: number;
  /** The same per round, to show how much of a verdict the run's drift decides. */
  readonly ttfbP50ByRoundMs: number[];
  readonly ttfbP99Ms: number;
  readonly totalP50Ms: number;
  readonly totalP99Ms: number;
  /** From /proc/<pid>/stat utime+stime, summed over rounds. */
  readonly cpuUsPerEvent: number;
  readonly cpuUsPerRequest: number;
  /** The same from schedstat (ns resolution), as a check on the tick rounding. */
  readonly schedUsPerEvent: number;
  readonly cpuPerEventByRound: number[];
  readonly targetCpuPercent: number;
  readonly upstreamUsPerEvent: number;
  readonly upstreamCpuPercent: number;
  readonly loadgenCpuPercent: number;
  readonly peakRssMiB: number;
  readonly ticks: number;
}

function summarise(target: Target, cells: readonly Cell[]): Summary {
  const sum = (f: (r: LoadResult) => number): number => cells.reduce((a, c) => a + f(c.result), 0);
  const ok = sum((r) => r.ok);
  const events = sum((r) => r.events);
  const wallS = sum((r) => r.wallMs) / 1000;
  const ttfb = sortedCopy(cells.flatMap((c) => c.result.ttfbUs));
  const total = sortedCopy(cells.flatMap((c) => c.result.totalUs));
  const proxied = target.pids.length > 0;
  const statUs = sum((r) => r.cpu.target.statUs);
  return {
    target: target.name,
    ok,
    failed: sum((r) => r.failed),
    streamsPerS: ok / wallS,
    eventsPerS: events / wallS,
    ttfbP50Ms: percentile(ttfb, 50) / 1000,
    ttfbP50ByRoundMs: cells.map((c) => percentile(sortedCopy(c.result.ttfbUs), 50) / 1000),
    ttfbP99Ms: percentile(ttfb, 99) / 1000,
    totalP50Ms: percentile(total, 50) / 1000,
    totalP99Ms: percentile(total, 99) / 1000,
    cpuUsPerEvent: proxied ? statUs / events : Number.NaN,
    cpuUsPerRequest: proxied ? statUs / ok : Number.NaN,
    schedUsPerEvent: proxied ? sum((r) => r.cpu.target.schedUs) / events : Number.NaN,
    cpuPerEventByRound: proxied ? cells.map((c) => c.result.cpu.target.statUs / Math.max(1, c.result.events)) : [],
    targetCpuPercent: proxied ? statUs / 1e4 / wallS : Number.NaN,
    upstreamUsPerEvent: sum((r) => r.cpu.upstream.statUs) / events,
    upstreamCpuPercent: sum((r) => r.cpu.upstream.statUs) / 1e4 / wallS,
    loadgenCpuPercent: sum((r) => r.cpu.loadgen.statUs) / 1e4 / wallS,
    peakRssMiB: proxied ? Math.max(...cells.map((c) => c.result.peakRssKb)) / 1024 : Number.NaN,
    ticks: statUs / 10_000,
  };
}

/**
 * TTFB added over direct round by round (rounds are interleaved, so round i of both ran side by side), and in
 * how many rounds it was within `limitMs`: a verdict that holds in one round of three is luck, not a result.
 */
function byRound(mine: Summary, direct: Summary, limitMs: number, show: (ms: number) => string): string {
  const added = mine.ttfbP50ByRoundMs.map((ms, i) => ms - (direct.ttfbP50ByRoundMs[i] ?? Number.NaN));
  const met = added.filter((ms) => ms <= limitMs).length;
  return `(by round ${added.map(show).join(' / ')}: met in ${met} of ${added.length})`;
}

// ---- main -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const quiet = opts['wait-quiet'] ? await waitQuiet() : undefined;
  const startedAt = new Date(); // after the wait: the time of the measurements
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();
  const upstreamRun = await forkServer('upstream.js', []);
  const upstreamOrigin = `http://127.0.0.1:${upstreamRun.port}`;
  const upstreamPid = upstreamRun.child.pid ?? 0;
  const nginx: { version?: string } = {};
  const specs = targetSpecs(upstreamOrigin, upstreamRun.port, nginx);
  const targets: Target[] = [];
  for (const spec of specs) targets.push(await spec.start());
  const nginxVersion = nginx.version;
  const loadgen = new LoadGenerator();
  await loadgen.ready;
  progress(`targets: ${targets.map((t) => `${t.name} (${t.origin}, pid ${t.pids.join('+') || '-'})`).join(', ')}`);

  const onlyScenarios = opts.scenarios?.split(',');
  const scenarios = SCENARIOS.filter((s) => onlyScenarios === undefined || onlyScenarios.includes(s.id));
  const cells: Cell[] = [];
  const t0 = performance.now();

  try {
    if (sections.has('main')) {
      // Round 0 is not recorded: it lets V8 compile the hot paths of every target for every scenario;
      // without it the first round of each target costs 20-50 % more CPU than the others.
      for (let round = 0; round <= rounds; round++) {
        for (const s of scenarios) {
          for (const target of targets) {
            const job: LoadJob = {
              kind: s.kind,
              origin: target.origin,
              shape: s.shape,
              concurrency: s.concurrency,
              freshConnections: freshConnections(target, s.kind, s.shape),
              minMs: round === 0 ? WARM_UP_MS : cellMs,
              minRequests: round === 0 ? s.concurrency : s.minRequests,
              staggerMs: staggerOf(s.shape),
              watch: watchOf(target, upstreamPid),
            };
            const result = await loadgen.run<LoadResult>(job);
            if (round > 0) cells.push({ round, scenario: s.id, target: target.name, result });
            progress(`[${round === 0 ? 'warm-up' : `round ${round}`}] ${s.id} ${target.name}: ${describe(result, target)}`);
          }
        }
      }
    }

    // Memory: a fresh process per target, idle and then through the 64-stream scenario, so that no
    // earlier scenario's heap growth is counted in it.
    const memory: Array<{ target: string; idleMiB: number; peakMiB: number; failed: number }> = [];
    const p64 = SCENARIOS.find((s) => s.id === '64x50p');
    if (sections.has('memory') && p64 !== undefined) {
      for (const spec of specs.filter((s) => s.name !== 'direct')) {
        const target = await spec.start();
        try {
          await new Promise((r) => setTimeout(r, 1000));
          const idleMiB = target.pids.reduce((sum, pid) => sum + rssKb(pid), 0) / 1024;
          const r = await loadgen.run<LoadResult>({
            kind: 'streams',
            origin: target.origin,
            shape: p64.shape,
            concurrency: p64.concurrency,
            freshConnections: false,
            minMs: MEMORY_MS,
            minRequests: p64.minRequests,
            staggerMs: staggerOf(p64.shape),
            watch: watchOf(target, upstreamPid),
          });
          memory.push({ target: target.name, idleMiB, peakMiB: r.peakRssKb / 1024, failed: r.failed });
          progress(`[memory] ${target.name}: idle ${fmt(idleMiB)} MiB, ${describe(r, target)}`);
        } finally {
          await target.stop();
        }
      }
    }

    // How cost grows, on fresh processes (one per event size), from 1 stream up.
    const scaling: Array<{ size: number; concurrency: number; target: string; cpuUsPerEvent: number; statUsPerEvent: number; peakRssMiB: number; events: number; failed: number }> = [];
    if (sections.has('scaling')) {
      for (const size of [SMALL, LARGE]) {
        const fresh: Target[] = [];
        for (const spec of specs.filter((s) => s.name !== 'direct')) fresh.push(await spec.start());
        try {
          for (const concurrency of SCALING_CONCURRENCY) {
            for (const target of fresh) {
              const r = await loadgen.run<LoadResult>({
                kind: 'streams',
                origin: target.origin,
                shape: SCALING_SHAPE(size),
                concurrency,
                freshConnections: false,
                minMs: cellMs,
                minRequests: concurrency,
                staggerMs: staggerOf(SCALING_SHAPE(size)),
                watch: watchOf(target, upstreamPid),
              });
              scaling.push({
                size,
                concurrency,
                target: target.name,
                cpuUsPerEvent: r.cpu.target.schedUs / Math.max(1, r.events),
                statUsPerEvent: r.cpu.target.statUs / Math.max(1, r.events),
                peakRssMiB: r.peakRssKb / 1024,
                events: r.events,
                failed: r.failed,
              });
              progress(`[scaling] ${size} B × ${concurrency} ${target.name}: ${describe(r, target)}`);
            }
          }
        } finally {
          for (const t of fresh) await t.stop();
        }
      }
    }

    const backpressure: Array<{ target: string; bytesRead: number; rss: Array<[number, number]> }> = [];
    if (sections.has('backpressure')) {
      for (const target of targets.filter((t) => t.kind !== 'direct')) {
        const r = await loadgen.run<SlowReaderResult>({
          kind: 'slow-reader',
          origin: target.origin,
          shape: { events: 2_000_000, size: SMALL, paceMs: 0 },
          durationMs: quick ? 3000 : 8000,
          sampleEveryMs: 1000,
          watch: watchOf(target, upstreamPid),
        });
        backpressure.push({ target: target.name, bytesRead: r.bytesRead, rss: r.rss });
        progress(`[backpressure] ${target.name}: read ${r.bytesRead} B, RSS ${r.rss.map(([, kb]) => fmt(kb / 1024)).join(' → ')} MiB`);
        // Let the target notice the client is gone before the next one starts.
        await new Promise((res) => setTimeout(res, 300));
      }
    }

    // Alone on the machine, like every cell: the other processes are idle now.
    const holdUs = sections.has('hold') ? holdCpuUsPerStream() : undefined;
    if (holdUs !== undefined) progress(`[hold] ${fmt(holdUs, 2)} µs of CPU per stream`);

    const startup: number[] = [];
    if (sections.has('startup')) {
      const bin = join(root, 'bin', 'llama-status-proxy.js');
      for (let i = 0; i < STARTUP_RUNS; i++) startup.push(await startupMs(bin, upstreamOrigin));
      progress(`[startup] ${startup.map((ms) => fmt(ms, 0)).join(', ')} ms`);
    }

    const elapsedS = (performance.now() - t0) / 1000;
    const loadAfter = readFileSync('/proc/loadavg', 'utf8').trim();
    const report = render({
      startedAt,
      quiet,
      loadBefore,
      loadAfter,
      elapsedS,
      nginxVersion,
      targets,
      scenarios,
      cells,
      memory,
      scaling,
      backpressure,
      holdUs,
      startup,
    });
    process.stdout.write(report.markdown);
    const jsonPath = opts.json ?? join(root, '.cache', 'bench', `bench-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    mkdirSync(dirname(jsonPath), { recursive: true });
    writeFileSync(jsonPath, JSON.stringify(report.data, null, 2));
    progress(`figures written to ${jsonPath}`);
  } finally {
    await loadgen.stop();
    for (const t of targets) await t.stop();
    await stopChild(upstreamRun.child);
  }
}

// ---- the report -------------------------------------------------------------------------------------

interface ReportInput {
  startedAt: Date;
  quiet: string | undefined;
  loadBefore: string;
  loadAfter: string;
  elapsedS: number;
  nginxVersion: string | undefined;
  targets: Target[];
  scenarios: readonly Scenario[];
  cells: Cell[];
  memory: Array<{ target: string; idleMiB: number; peakMiB: number; failed: number }>;
  scaling: Array<{ size: number; concurrency: number; target: string; cpuUsPerEvent: number; statUsPerEvent: number; peakRssMiB: number; events: number; failed: number }>;
  backpressure: Array<{ target: string; bytesRead: number; rss: Array<[number, number]> }>;
  /** CPU µs per healthy stream spent holding it (bench/hold-cost.ts). */
  holdUs: number | undefined;
  /** Milliseconds from spawn to listening, one per run. */
  startup: number[];
}

/** The start-up bound of the CLI (issue #2). */
const STARTUP_LIMIT_MS = 2000;

/** RSS after the first second vs. the rest: a proxy that buffers grows by what the upstream can push. */
const BACKPRESSURE_GROWTH_LIMIT_MIB = 8;

function render(input: ReportInput): { markdown: string; data: unknown } {
  const out: string[] = [];
  const m = machine();
  out.push(`# llama-status-proxy benchmark, ${input.startedAt.toISOString()}`);
  out.push('');
  out.push(
    table(
      ['machine', ''],
      [
        ...Object.entries(m).map(([k, v]) => [k, v]),
        ['load average before', input.loadBefore],
        ['load average after', input.loadAfter],
        ...(input.quiet !== undefined ? [['quiet wait', input.quiet]] : []),
        ['nginx', input.nginxVersion ?? 'not installed'],
        ['rounds × cell', `${rounds} × ${cellMs} ms`],
        ['measuring took', `${fmt(input.elapsedS, 0)} s`],
      ],
    ),
  );
  out.push('');

  const summaries = new Map<string, Map<string, Summary>>();
  for (const s of input.scenarios) {
    const byTarget = new Map<string, Summary>();
    for (const t of input.targets) {
      const cells = input.cells.filter((c) => c.scenario === s.id && c.target === t.name);
      if (cells.length > 0) byTarget.set(t.name, summarise(t, cells));
    }
    if (byTarget.size === 0) continue;
    summaries.set(s.id, byTarget);
    out.push(`## ${s.title}`);
    out.push('');
    out.push(
      table(
        ['target', 'req/s', 'events/s', 'TTFB p50 ms', 'TTFB p99 ms', 'total p50 ms', 'total p99 ms', 'CPU µs/event', 'CPU µs/req', 'µs/event by round', 'proxy CPU %', 'peak RSS MiB (warm)', 'upstream µs/ev (CPU %)', 'client CPU %', 'failed'],
        [...byTarget.values()].map((x) => [
          x.target,
          fmt(x.streamsPerS, 0),
          fmt(x.eventsPerS, 0),
          fmt(x.ttfbP50Ms, 3),
          fmt(x.ttfbP99Ms, 3),
          fmt(x.totalP50Ms, 2),
          fmt(x.totalP99Ms, 2),
          fmt(x.cpuUsPerEvent, 2),
          fmt(x.cpuUsPerRequest, 1),
          x.cpuPerEventByRound.map((v) => fmt(v, 2)).join(' / ') || '–',
          fmt(x.targetCpuPercent, 0),
          fmt(x.peakRssMiB, 1),
          `${fmt(x.upstreamUsPerEvent, 2)} (${fmt(x.upstreamCpuPercent, 0)})`,
          fmt(x.loadgenCpuPercent, 0),
          String(x.failed),
        ]),
      ),
    );
    out.push('');
  }

  if (input.memory.length > 0) {
    out.push(`## Memory: a fresh process, idle and through ${fmt(MEMORY_MS / 1000, 0)} s of 64 paced streams`);
    out.push('');
    out.push(
      table(
        ['target', 'idle RSS MiB', 'peak RSS MiB (VmHWM)', 'failed'],
        input.memory.map((x) => [x.target, fmt(x.idleMiB, 1), fmt(x.peakMiB, 1), String(x.failed)]),
      ),
    );
    out.push('');
  }

  if (input.scaling.length > 0) {
    const names = [...new Set(input.scaling.map((r) => r.target))];
    out.push('## How cost grows: paced streams (100 events, 5 ms per token)');
    out.push('');
    out.push('A fresh process per event size, concurrency rising; RSS is the peak so far. CPU per event from schedstat (ns),');
    out.push('because a single paced stream costs less than one 10 ms tick per second.');
    out.push('');
    const rows: string[][] = [];
    for (const size of [...new Set(input.scaling.map((r) => r.size))]) {
      for (const c of [...new Set(input.scaling.map((r) => r.concurrency))]) {
        const row = [`${size} B × ${c}`];
        for (const n of names) {
          const r = input.scaling.find((x) => x.size === size && x.concurrency === c && x.target === n);
          row.push(r ? `${fmt(r.cpuUsPerEvent, 2)} µs, ${fmt(r.peakRssMiB, 1)} MiB${r.failed > 0 ? ` (${r.failed} failed)` : ''}` : '–');
        }
        rows.push(row);
      }
    }
    out.push(table(['event size × streams', ...names.map((n) => `${n}: CPU/event, peak RSS`)], rows));
    out.push('');
  }

  const bpVerdicts = new Map<string, { growthMiB: number; pass: boolean }>();
  if (input.backpressure.length > 0) {
    out.push('## Backpressure: a client reading 1 byte per ms from a 500 MB stream');
    out.push('');
    const seconds = Math.max(...input.backpressure.map((b) => b.rss.length));
    const rows = input.backpressure.map((b) => {
      const after1s = b.rss.filter(([t]) => t >= 900).map(([, kb]) => kb);
      const growthMiB = (Math.max(...after1s) - (after1s[0] ?? 0)) / 1024;
      const pass = growthMiB < BACKPRESSURE_GROWTH_LIMIT_MIB;
      bpVerdicts.set(b.target, { growthMiB, pass });
      return [
        b.target,
        ...Array.from({ length: seconds }, (_, i) => fmt((b.rss[i]?.[1] ?? Number.NaN) / 1024, 1)),
        String(b.bytesRead),
        `${fmt(growthMiB, 1)} MiB ${pass ? 'bounded' : 'GROWS'}`,
      ];
    });
    out.push(
      table(
        ['target', ...Array.from({ length: seconds }, (_, i) => `RSS ${i} s`), 'bytes read', 'growth after 1 s'],
        rows,
      ),
    );
    out.push('');
  }

  // The hold against the proxy's CPU per short stream, and against how much that moved between rounds.
  const holdRows: Array<{ build: string; perStreamUs: number; spreadUs: number }> = [];
  if (input.holdUs !== undefined) {
    for (const lsp of input.targets.filter((t) => t.kind === 'lsp')) {
      const ttfb = summaries.get('ttfb')?.get(lsp.name);
      if (ttfb === undefined || ttfb.cpuPerEventByRound.length < 2) continue;
      const eventsPerStream = ttfb.cpuUsPerRequest / ttfb.cpuUsPerEvent;
      const spreadUs = (Math.max(...ttfb.cpuPerEventByRound) - Math.min(...ttfb.cpuPerEventByRound)) * eventsPerStream;
      holdRows.push({ build: lsp.name, perStreamUs: ttfb.cpuUsPerRequest, spreadUs });
    }
    out.push('## The hold: CPU per healthy stream');
    out.push('');
    out.push(
      table(
        ['build', 'hold µs/stream', 'proxy CPU µs per short stream', 'share', 'spread of that between rounds µs'],
        holdRows.length > 0
          ? holdRows.map((r) => [r.build, fmt(input.holdUs ?? 0, 2), fmt(r.perStreamUs, 1), `${fmt((100 * (input.holdUs ?? 0)) / r.perStreamUs, 1)} %`, fmt(r.spreadUs, 1)])
          : [['(no ttfb cells)', fmt(input.holdUs, 2), '–', '–', '–']],
      ),
    );
    out.push('');
  }

  if (input.startup.length > 0) {
    const sorted = sortedCopy(input.startup);
    out.push('## Start-up: spawn to listening (sidecar mode, Node start included)');
    out.push('');
    out.push(table(['runs', 'median ms', 'slowest ms'], [[String(sorted.length), fmt(percentile(sorted, 50), 0), fmt(sorted[sorted.length - 1] ?? Number.NaN, 0)]]));
    out.push('');
  }

  // ---- targets ----
  const verdicts: Array<{ build: string; target: string; value: string; pass: boolean | undefined }> = [];
  const get = (scenario: string, target: string): Summary | undefined => summaries.get(scenario)?.get(target);
  const pipeName = input.targets.find((t) => t.kind === 'pipe')?.name;
  const directName = input.targets.find((t) => t.kind === 'direct')?.name;
  for (const lsp of input.targets.filter((t) => t.kind === 'lsp')) {
    const s32 = get('32x200', lsp.name);
    const pipe32 = pipeName ? get('32x200', pipeName) : undefined;
    if (s32 && pipe32) {
      const ratio = s32.cpuUsPerEvent / pipe32.cpuUsPerEvent;
      verdicts.push({
        build: lsp.name,
        target: 'CPU per event at 32×200 unpaced ≤ node pipe (aim: half)',
        value: `${fmt(s32.cpuUsPerEvent, 2)} vs ${fmt(pipe32.cpuUsPerEvent, 2)} µs = ${fmt(ratio, 2)}× ${ratio <= 0.5 ? '(aim met)' : '(aim not met)'}`,
        pass: ratio <= 1,
      });
    }
    const ttfbTargets: ReadonlyArray<[scenario: string, target: string]> = [
      ['ttfb', 'TTFB p50 added over direct, one connection ≤ 100 µs'],
      ['ttfb-ka', 'the same, upstream keeping stream connections open (not llama-server)'],
      ['json', 'the same, non-stream requests (llama-server keeps those connections open)'],
    ];
    for (const [scenario, target] of ttfbTargets) {
      const mine = get(scenario, lsp.name);
      const direct = directName ? get(scenario, directName) : undefined;
      if (mine === undefined || direct === undefined) continue;
      const addedUs = (mine.ttfbP50Ms - direct.ttfbP50Ms) * 1000;
      const rounds = byRound(mine, direct, 100 / 1000, (ms) => `${fmt(ms * 1000, 0)}`);
      verdicts.push({ build: lsp.name, target, value: `${fmt(addedUs, 0)} µs ${rounds}`, pass: addedUs <= 100 });
    }
    const p64 = get('64x50p', lsp.name);
    const p64Direct = directName ? get('64x50p', directName) : undefined;
    if (p64 && p64Direct) {
      const addedMs = p64.ttfbP50Ms - p64Direct.ttfbP50Ms;
      const rounds = byRound(p64, p64Direct, 1, (ms) => `+${fmt(ms, 2)}`);
      verdicts.push({ build: lsp.name, target: '64 paced streams: TTFB p50 within 1 ms of direct', value: `+${fmt(addedMs, 3)} ms ${rounds}`, pass: addedMs <= 1 });
    }
    if (p64) {
      verdicts.push({ build: lsp.name, target: '64 paced streams: CPU per event ≤ 15 µs', value: `${fmt(p64.cpuUsPerEvent, 2)} µs`, pass: p64.cpuUsPerEvent <= 15 });
    }
    const mem = input.memory.find((x) => x.target === lsp.name);
    if (mem) {
      verdicts.push({ build: lsp.name, target: '64 paced streams: peak RSS ≤ 80 MiB (fresh process)', value: `${fmt(mem.peakMiB, 1)} MiB`, pass: mem.peakMiB <= 80 });
    } else if (p64) {
      verdicts.push({ build: lsp.name, target: '64 paced streams: peak RSS ≤ 80 MiB (process warm from earlier cells)', value: `${fmt(p64.peakRssMiB, 1)} MiB`, pass: p64.peakRssMiB <= 80 });
    }
    const hold = holdRows.find((r) => r.build === lsp.name);
    if (hold !== undefined && input.holdUs !== undefined) {
      verdicts.push({
        build: lsp.name,
        target: 'the hold adds nothing measurable to a healthy stream (its CPU < the round-to-round spread)',
        value: `${fmt(input.holdUs, 2)} µs vs ${fmt(hold.spreadUs, 1)} µs`,
        pass: input.holdUs < hold.spreadUs,
      });
    }
    const bp = bpVerdicts.get(lsp.name);
    if (bp) verdicts.push({ build: lsp.name, target: `slow client: RSS grows < ${BACKPRESSURE_GROWTH_LIMIT_MIB} MiB after the first second`, value: `${fmt(bp.growthMiB, 1)} MiB`, pass: bp.pass });
  }
  const slowestStart = input.startup.length > 0 ? Math.max(...input.startup) : undefined;
  if (slowestStart !== undefined) {
    verdicts.push({ build: 'llama-status-proxy', target: `start-up, spawn to listening < ${STARTUP_LIMIT_MS / 1000} s (slowest run)`, value: `${fmt(slowestStart, 0)} ms`, pass: slowestStart < STARTUP_LIMIT_MS });
  }
  if (verdicts.length > 0) {
    out.push('## Targets');
    out.push('');
    out.push(table(['build', 'target', 'measured', 'result'], verdicts.map((v) => [v.build, v.target, v.value, v.pass === undefined ? '–' : v.pass ? 'PASS' : 'FAIL'])));
    out.push('');
  }

  // How far the 10 ms tick rounding of /proc/<pid>/stat is from the ns counter, on the cells used above.
  const checks = [...summaries.values()].flatMap((byTarget) => [...byTarget.values()]).filter((x) => x.ticks >= 50);
  if (checks.length > 0) {
    const worst = Math.max(...checks.map((x) => Math.abs(x.cpuUsPerEvent / x.schedUsPerEvent - 1)));
    out.push(`CPU from /proc/<pid>/stat; on cells with ≥ 50 ticks it is within ${fmt(worst * 100, 1)} % of schedstat's ns count.`);
    out.push('');
  }

  const data = {
    startedAt: input.startedAt.toISOString(),
    machine: m,
    loadBefore: input.loadBefore,
    loadAfter: input.loadAfter,
    quiet: input.quiet,
    nginx: input.nginxVersion,
    rounds,
    cellMs,
    summaries: Object.fromEntries([...summaries].map(([k, v]) => [k, Object.fromEntries(v)])),
    cells: input.cells.map((c) => ({ ...c, result: { ...c.result, ttfbUs: undefined, totalUs: undefined } })),
    memory: input.memory,
    scaling: input.scaling,
    backpressure: input.backpressure,
    holdUs: input.holdUs,
    startup: input.startup,
    verdicts,
  };
  return { markdown: out.join('\n'), data };
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
