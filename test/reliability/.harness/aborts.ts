// Clients that leave at every phase of an exchange, many times over, against the in-process proxy:
// afterwards no descriptor, socket or upstream connection may be left behind, and memory stays flat.
import { request, type ClientRequest } from 'node:http';
import type { OptionKey } from '../../../src/config.js';
import { startFakeUpstream, type FakeUpstream, type RawResponsePlan, type RecordedRequest } from '../../helpers/fake-upstream.js';
import { startProxy, type RunningProxy } from '../../helpers/proxy.js';
import { fdCount, heldConnections, memoryAfterGc, settle, sleep, within, prng, type MemorySample } from './probes.js';
import { chunk, head, healthyEvents, ROLE, SSE_HEAD, sseResponse, token } from './wire.js';
import { send } from './client.js';

export const PHASES = ['upload', 'waiting', 'hold', 'mid-stream'] as const;
export type Phase = (typeof PHASES)[number];

export interface AbortOptions {
  iterations: number;
  /** Exchanges in flight at once. */
  concurrency: number;
  /** Declared size of the uploads that are cut short; a quarter of it is sent. */
  uploadBytes: number;
  seed: number;
  /** The phases to cycle through; all of them by default. */
  phases?: readonly Phase[];
}

export interface AbortResult {
  iterations: number;
  byPhase: Record<Phase, number>;
  /** An iteration whose precondition did not hold (e.g. the client saw a head during the hold). */
  problems: string[];
  /** Upstream requests (waiting, hold, mid-stream) whose connection was not closed within 2 s. */
  upstreamLeftOpen: number;
  /** From the client leaving to the upstream connection closing, for the phases the upstream records. */
  closeMs: { p50: number; max: number };
  /** Exchanges the proxy logged as 499 (client gone). */
  logged499: number;
  fd: { before: number; after: number };
  /** Loopback connections still held on the upstream's port (both ends counted). */
  upstreamConnections: { before: number; after: number };
  /** Sockets alive in this process (node's TCPSocketWrap handles). */
  sockets: { before: number; after: number };
  /** This process (proxy, upstream and clients together), after a full garbage collection. */
  memory: { before: MemorySample; after: MemorySample };
  ms: number;
}

const UPSTREAM_PLANS: Record<Exclude<Phase, 'upload'>, RawResponsePlan> = {
  waiting: { raw: [], thenClose: 'hang' },
  hold: { raw: [SSE_HEAD, chunk(ROLE)], thenClose: 'hang' },
  'mid-stream': { raw: [SSE_HEAD, chunk(ROLE), chunk(token('Hello'))], thenClose: 'hang' },
};
const HEALTH_OK = Buffer.concat([head(200, 'OK', [['Content-Length', '15'], ['Connection', 'close']]), Buffer.from('{"status":"ok"}')]);

function tcpSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;
}

export async function runAborts(opts: AbortOptions): Promise<AbortResult> {
  const started = performance.now();
  const arrived = new Map<string, (req: RecordedRequest) => void>();
  const upstream = await startFakeUpstream({
    onRequest: (req) => {
      if (req.method === 'GET') return { raw: [HEALTH_OK] };
      const id = req.headers['x-iter'] ?? '';
      arrived.get(id)?.(req);
      return UPSTREAM_PLANS[req.headers['x-phase'] as Exclude<Phase, 'upload'>];
    },
  });
  // No first-event timeout: a held exchange stays held until the client leaves.
  const options: Partial<Record<OptionKey, unknown>> = { upstream: upstream.url, firstEventTimeoutMs: 0, healthIntervalMs: 600_000 };
  const proxy = await startProxy(options);
  try {
    return await abandonAll(opts, upstream, proxy, arrived, started);
  } finally {
    await proxy.stop();
    await upstream.close();
  }
}

async function abandonAll(
  opts: AbortOptions,
  upstream: FakeUpstream,
  proxy: RunningProxy,
  arrived: Map<string, (req: RecordedRequest) => void>,
  started: number,
): Promise<AbortResult> {
  const base = new URL(proxy.url);
  const rnd = prng(opts.seed);
  const problems: string[] = [];
  const closeMs: number[] = [];
  let upstreamLeftOpen = 0;
  const byPhase = Object.fromEntries(PHASES.map((p) => [p, 0])) as Record<Phase, number>;

  /** One exchange that the client abandons in `phase`. */
  async function once(i: number, phase: Phase): Promise<void> {
    const id = `${i}`;
    const upstreamReq = new Promise<RecordedRequest>((resolve) => arrived.set(id, resolve));
    let gotHead = false;
    let received = '';
    const uploading = phase === 'upload';
    const req: ClientRequest = request({
      host: base.hostname,
      port: base.port,
      path: '/v1/chat/completions',
      method: 'POST',
      agent: false,
      headers: {
        'content-type': 'application/json',
        'x-iter': id,
        'x-phase': phase,
        'content-length': String(uploading ? opts.uploadBytes : 15),
      },
    });
    req.on('error', () => undefined); // the client itself destroys the request
    const sawHello = new Promise<void>((resolve) => {
      req.on('response', (res) => {
        gotHead = true;
        res.on('error', () => undefined);
        res.on('data', (d: Buffer) => {
          received += d.toString('utf8');
          if (received.includes('Hello')) resolve();
        });
      });
    });
    let leftAt = 0;
    const leave = (): void => {
      leftAt = performance.now();
      req.destroy();
    };
    if (uploading) {
      // a quarter of the declared body, then gone: the proxy is streaming it to the upstream meanwhile
      const piece = Buffer.alloc(64 * 1024, 0x20);
      for (let sent = 0; sent < opts.uploadBytes / 4; sent += piece.length) {
        if (!req.write(piece)) await within(new Promise((r) => req.once('drain', r)), 2000);
      }
      await sleep(rnd.int(3));
      leave();
      if (i >= 0) byPhase[phase]++;
      arrived.delete(id);
      return;
    }
    req.end('{"stream":true}');
    const upstreamGot = await within(upstreamReq, 3000);
    arrived.delete(id);
    if (upstreamGot.timedOut) {
      problems.push(`${phase} #${i}: the upstream never got the request`);
      req.destroy();
      return;
    }
    if (phase === 'mid-stream') {
      if ((await within(sawHello, 3000)).timedOut) problems.push(`mid-stream #${i}: the first token never reached the client`);
    } else {
      // a few ms more: the proxy is holding (or waiting for headers) and must not have answered
      await sleep(rnd.int(5));
      if (gotHead) problems.push(`${phase} #${i}: the client got a response head while the proxy should hold`);
    }
    leave();
    if (i >= 0) byPhase[phase]++;
    const closed = await within(upstream.waitForClose(upstreamGot.value), 2000);
    if (closed.timedOut) upstreamLeftOpen++;
    else closeMs.push(Math.max(0, closed.value - leftAt));
  }

  const phases = opts.phases ?? PHASES;
  const phaseOf = (i: number): Phase => phases[((i % phases.length) + phases.length) % phases.length] ?? 'hold';
  const batch = async (from: number, count: number): Promise<void> => {
    for (let i = from; i < from + count; i += opts.concurrency) {
      const n = Math.min(opts.concurrency, from + count - i);
      await Promise.all(Array.from({ length: n }, (_, k) => once(i + k, phaseOf(i + k))));
    }
  };
  // Idle pool connections to the upstream close after undici's keep-alive (4 s in server.ts); past that
  // nothing may hold one.
  const quiet = (): Promise<boolean> => settle(() => heldConnections(upstream.port) === 0, 6000, 50);

  // Descriptors and connections: the baseline is the proxy at rest after its readiness probe, before
  // any exchange, since nothing an exchange allocates may outlive it.
  await settle(() => proxy.logs.some((l) => l.msg === 'upstream health changed'), 3000);
  await quiet();
  const before = { fd: fdCount(), conns: heldConnections(upstream.port), sockets: tcpSockets() };
  // Memory: the baseline comes after a short warm-up, which loads the lazily compiled code paths once.
  await batch(-2 * PHASES.length, 2 * PHASES.length);
  const logged = (from: number): number => proxy.logs.slice(from).filter((l) => l.msg === 'request' && l.status === 499).length;
  // an abandoned upload returns at once; its log line must not land in the count that follows
  await settle(() => logged(0) >= 2 * PHASES.length, 3000);
  const memoryBefore = memoryAfterGc();
  const logsBefore = proxy.logs.length;

  await batch(0, opts.iterations);

  await settle(() => heldConnections(upstream.port) === 0 && fdCount() <= before.fd && tcpSockets() <= before.sockets, 6000, 50);
  await settle(() => logged(logsBefore) >= opts.iterations, 3000);
  const after = { fd: fdCount(), conns: heldConnections(upstream.port), sockets: tcpSockets(), memory: memoryAfterGc() };
  const logged499 = logged(logsBefore);
  closeMs.sort((a, b) => a - b);
  return {
    iterations: opts.iterations,
    byPhase,
    problems,
    upstreamLeftOpen,
    closeMs: { p50: Math.round(closeMs[Math.floor(closeMs.length / 2)] ?? 0), max: Math.round(closeMs[closeMs.length - 1] ?? 0) },
    logged499,
    fd: { before: before.fd, after: after.fd },
    upstreamConnections: { before: before.conns, after: after.conns },
    sockets: { before: before.sockets, after: after.sockets },
    memory: { before: memoryBefore, after: after.memory },
    ms: Math.round(performance.now() - started),
  };
}

export interface UploadResult {
  status: number | undefined;
  end: string;
  bodyMatches: boolean;
  /** Bytes of the request body the upstream received, and how many were sent. */
  upstreamGot: number | undefined;
  sent: number;
  answer: string;
}

/**
 * A large upload the way curl sends one (it adds `Expect: 100-continue` to large bodies). Node's server
 * answers the 100 itself, so the header has done its job once the request reaches the proxy.
 */
export async function largeUploadWithExpect(bytes: number): Promise<UploadResult> {
  const events = healthyEvents(2);
  const upstream = await startFakeUpstream({ onRequest: (req) => (req.method === 'POST' ? { raw: sseResponse(events) } : { raw: [HEALTH_OK] }) });
  const proxy = await startProxy({ upstream: upstream.url, healthIntervalMs: 600_000 });
  try {
    const body = Buffer.from(JSON.stringify({ stream: true, messages: [{ role: 'user', content: 'x'.repeat(bytes) }] }));
    const seen = await send(proxy.url, '/v1/chat/completions', { headers: { expect: '100-continue' }, body, timeoutMs: 10_000 });
    return {
      status: seen.status,
      end: seen.end,
      bodyMatches: seen.body.toString('utf8') === events.join(''),
      upstreamGot: upstream.requests.find((r) => r.method === 'POST')?.body.length,
      sent: body.length,
      answer: seen.body.toString('utf8').slice(0, 300),
    };
  } finally {
    await proxy.stop();
    await upstream.close();
  }
}
