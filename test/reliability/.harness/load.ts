// Many concurrent streams through the proxy (a child process, as deployed) against the fake upstream,
// with a few percent of them broken on purpose. Every request must end in the outcome its upstream
// behaviour calls for; the proxy must log no error and keep running.
import { Agent } from 'node:http';
import { startFakeUpstream, type RawResponsePlan } from '../../helpers/fake-upstream.js';
import { startProxyCli, type LogLine } from '../../helpers/proxy.js';
import { errorCode, jsonOf, send, type Seen } from './client.js';
import { prng, rssBytes, settle } from './probes.js';
import { chunk, DONE, FINISH, head, inBandError, LAST_CHUNK, ROLE, SSE_HEAD, token } from './wire.js';

/** What the upstream does for one request. */
export const FAULT_KINDS = [
  'in-band-400',
  'in-band-500',
  'in-band-503',
  'reset-before-headers',
  'reset-mid-stream',
  'truncated-eof',
  'truncated-clean',
  'empty-stream',
] as const;
export type UpstreamKind = 'healthy' | (typeof FAULT_KINDS)[number];

/** What the client saw, by kind. */
export type Outcome = 'ok' | 'rewritten' | 'own-error' | 'error-frame' | 'unexpected';

interface Expected {
  outcome: Exclude<Outcome, 'unexpected'>;
  status: number;
  /** ok: the exact body; error-frame: the relayed part before the frame. */
  body?: Buffer;
  code?: string | number;
}

interface Planned {
  plan: RawResponsePlan;
  expected: Expected;
}

const IN_BAND: Record<'in-band-400' | 'in-band-500' | 'in-band-503', { code: number; type: string; message: string }> = {
  'in-band-400': {
    code: 400,
    type: 'exceed_context_size_error',
    message: 'the request exceeds the available context size, try increasing it',
  },
  'in-band-500': { code: 500, type: 'server_error', message: 'Context size has been exceeded.' },
  'in-band-503': { code: 503, type: 'unavailable_error', message: 'Loading model' },
};

/** The upstream's plan for a request and what the client must see, from the request's x-load header. */
export function planFor(kind: UpstreamKind, tokens: number, delayMs: number): Planned {
  const toks = Array.from({ length: tokens }, (_, i) => token(`w${i} `));
  const text = (...events: string[]): Buffer => Buffer.from(events.join(''));
  switch (kind) {
    case 'healthy': {
      const events = [ROLE, ...toks, FINISH, DONE];
      return {
        plan: { raw: [SSE_HEAD, ...events.map((e) => chunk(e)), LAST_CHUNK], delayMs, thenClose: 'end' },
        expected: { outcome: 'ok', status: 200, body: text(...events) },
      };
    }
    case 'in-band-400':
    case 'in-band-500':
    case 'in-band-503': {
      const e = IN_BAND[kind];
      return {
        plan: { raw: [SSE_HEAD, chunk(ROLE), chunk(inBandError(e.code, e.type, e.message)), LAST_CHUNK], delayMs, thenClose: 'end' },
        expected: { outcome: 'rewritten', status: e.code, code: e.code },
      };
    }
    case 'reset-before-headers':
      return { plan: { raw: [], thenClose: 'destroy' }, expected: { outcome: 'own-error', status: 502, code: 'upstream_connection_lost' } };
    case 'empty-stream':
      return { plan: { raw: [SSE_HEAD, LAST_CHUNK], thenClose: 'end' }, expected: { outcome: 'own-error', status: 502, code: 'empty_stream' } };
    case 'reset-mid-stream':
    case 'truncated-eof':
    case 'truncated-clean': {
      const events = [ROLE, ...toks];
      const raw = [SSE_HEAD, ...events.map((e) => chunk(e)), ...(kind === 'truncated-clean' ? [LAST_CHUNK] : [])];
      const code = kind === 'truncated-clean' ? 'upstream_stream_ended' : 'upstream_connection_lost';
      return {
        plan: { raw, delayMs, thenClose: kind === 'reset-mid-stream' ? 'destroy' : 'end' },
        expected: { outcome: 'error-frame', status: 200, body: text(...events), code },
      };
    }
  }
}

/** Which outcome the client saw, or a description of what was wrong. */
export function classify(seen: Seen, x: Expected): { outcome: Outcome; why?: string } {
  const bad = (why: string): { outcome: Outcome; why: string } => ({
    outcome: 'unexpected',
    why: `${why} (expected ${x.outcome} ${x.status}; got ${seen.end} ${seen.status}, ${seen.body.length} bytes: ${JSON.stringify(seen.body.subarray(-160).toString('utf8'))}${seen.error ? `, ${seen.error}` : ''})`,
  });
  if (seen.end !== 'complete') return bad(`the exchange did not complete: ${seen.end}`);
  if (seen.status !== x.status) return bad('wrong status');
  switch (x.outcome) {
    case 'ok':
      return x.body !== undefined && seen.body.equals(x.body) ? { outcome: 'ok' } : bad('body differs from the upstream stream');
    case 'rewritten':
      if (seen.headers['x-status-rewritten'] !== 'in-band-error') return bad('no x-status-rewritten header');
      return errorCode(jsonOf(seen.body)) === x.code ? { outcome: 'rewritten' } : bad('error body does not carry the upstream error');
    case 'own-error':
      return errorCode(jsonOf(seen.body)) === x.code ? { outcome: 'own-error' } : bad(`error code is not ${x.code}`);
    case 'error-frame': {
      const relayed = x.body ?? Buffer.alloc(0);
      if (!seen.body.subarray(0, relayed.length).equals(relayed)) return bad('relayed part differs');
      const frame = /^(?:\r?\n)*data: (\{.*\})\n\n$/.exec(seen.body.subarray(relayed.length).toString('utf8'));
      return frame !== null && errorCode(jsonOf(Buffer.from(frame[1] ?? ''))) === x.code ? { outcome: 'error-frame' } : bad(`no ${x.code} error frame at the end`);
    }
  }
}

export interface LoadOptions {
  concurrency: number;
  durationMs: number;
  /** Share of requests whose upstream misbehaves. */
  faultRate: number;
  seed: number;
}

export interface LoadResult {
  concurrency: number;
  durationMs: number;
  requests: number;
  byUpstreamKind: Record<string, number>;
  byOutcome: Record<Outcome, number>;
  /** The first few unexpected outcomes, described. */
  unexpected: string[];
  /** Proxy log lines at warn or above, or not JSON; and whatever it wrote to stderr. */
  badLogs: LogLine[];
  stderr: string;
  /** Request lines the proxy logged, and how many of them by status. */
  logged: number;
  loggedByStatus: Record<string, number>;
  proxyAlive: boolean;
  proxyRss: { start: number; end: number; peak: number };
  /** Proxy RSS at each tenth of the run: a leak climbs steadily, a working set levels off. */
  rssTimeline: number[];
  latencyMs: { p50: number; p99: number; max: number };
  ms: number;
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const started = performance.now();
  const upstream = await startFakeUpstream({
    onRequest: (req) => {
      if (req.method === 'GET') return { raw: [Buffer.concat([head(200, 'OK', [['Content-Length', '2'], ['Connection', 'close']]), Buffer.from('{}')])] };
      const [kind, tokens, delay] = (req.headers['x-load'] ?? '').split(',');
      return planFor(kind as UpstreamKind, Number(tokens), Number(delay)).plan;
    },
  });
  const proxy = await startProxyCli(['--upstream', upstream.url, '--health-interval-ms', '600000']);
  const pid = proxy.child.pid ?? 0;
  const agent = new Agent({ keepAlive: true, maxSockets: opts.concurrency });
  try {
    await settle(() => proxy.logs.some((l) => l.msg === 'upstream health changed'), 3000);
    const rssStart = rssBytes(pid);
    const rnd = prng(opts.seed);
    const byUpstreamKind: Record<string, number> = {};
    const byOutcome: Record<Outcome, number> = { ok: 0, rewritten: 0, 'own-error': 0, 'error-frame': 0, unexpected: 0 };
    const unexpected: string[] = [];
    const latencies: number[] = [];
    let requests = 0;
    const deadline = performance.now() + opts.durationMs;
    const worker = async (): Promise<void> => {
      // bounded by time, and by count in case every request failed instantly
      for (let i = 0; i < 1_000_000 && performance.now() < deadline; i++) {
        const faulty = rnd.next() / 0x1_0000_0000 < opts.faultRate;
        const kind: UpstreamKind = faulty ? rnd.pick(FAULT_KINDS) : 'healthy';
        const tokens = 4 + rnd.int(12);
        const delay = 5 + rnd.int(20);
        const { expected } = planFor(kind, tokens, delay);
        requests++;
        byUpstreamKind[kind] = (byUpstreamKind[kind] ?? 0) + 1;
        const seen = await send(proxy.url, '/v1/chat/completions', { headers: { 'x-load': `${kind},${tokens},${delay}` }, timeoutMs: 15_000, agent });
        const { outcome, why } = classify(seen, expected);
        byOutcome[outcome]++;
        if (outcome === 'ok') latencies.push(seen.ms);
        if (why !== undefined && unexpected.length < 10) unexpected.push(`${kind}: ${why}`);
      }
    };
    const rssTimeline: number[] = [];
    const sampler = setInterval(() => rssTimeline.push(rssBytes(pid)), opts.durationMs / 10);
    await Promise.all(Array.from({ length: opts.concurrency }, () => worker()));
    clearInterval(sampler);
    const loggedLines = (): LogLine[] => proxy.logs.filter((l) => l.msg === 'request');
    await settle(() => loggedLines().length >= requests, 5000);
    const loggedByStatus: Record<string, number> = {};
    for (const l of loggedLines()) loggedByStatus[String(l.status)] = (loggedByStatus[String(l.status)] ?? 0) + 1;
    latencies.sort((a, b) => a - b);
    const at = (q: number): number => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0);
    return {
      concurrency: opts.concurrency,
      durationMs: opts.durationMs,
      requests,
      byUpstreamKind,
      byOutcome,
      unexpected,
      badLogs: proxy.logs.filter((l) => l.unparsed === true || (typeof l.level === 'number' && l.level >= 40)),
      stderr: proxy.stderr(),
      logged: loggedLines().length,
      loggedByStatus,
      proxyAlive: proxy.child.exitCode === null && proxy.child.signalCode === null,
      proxyRss: { start: rssStart, end: rssBytes(pid), peak: Math.max(rssStart, ...rssTimeline) },
      rssTimeline,
      latencyMs: { p50: at(0.5), p99: at(0.99), max: at(1) },
      ms: Math.round(performance.now() - started),
    };
  } finally {
    agent.destroy();
    await proxy.stop();
    await upstream.close();
  }
}
