// The upstream fault catalogue: what a broken llama-server (or whatever answers in its place) does, and
// what the client must see instead. Shared by upstream-faults.test.ts and the report script.
import { gunzipSync } from 'node:zlib';
import type { OptionKey } from '../../../src/config.js';
import { startFakeUpstream, type FakeUpstream, type RawResponsePlan } from '../../helpers/fake-upstream.js';
import { startProxy, type RunningProxy } from '../../helpers/proxy.js';
import { errorCode, jsonOf, lastEventData, send, type Seen } from './client.js';
import { deadPort, startRstUpstream, type RstUpstream } from './rst-upstream.js';
import { chunk, DONE, FINISH, gzipped, head, healthyEvents, inBandError, ROLE, SSE_HEAD, sseResponse, token } from './wire.js';

type ProxyOptions = Partial<Record<OptionKey, unknown>>;

/** Small timeouts so that every silence ends within a second or so. */
export const FAULT_OPTIONS = {
  firstEventTimeoutMs: 2000,
  upstreamHeadersTimeoutMs: 400,
  upstreamBodyTimeoutMs: 400,
  upstreamConnectTimeoutMs: 1000,
  maxHoldBytes: 4096,
  // the sidecar's readiness probe would otherwise hit the upstreams every second
  healthIntervalMs: 600_000,
} as const;

/**
 * Timers fire late on a loaded 2-core machine, and undici checks its timeouts on a coarse clock; a
 * bound this much above the configured timeout still tells "timed out as configured" from "hung".
 */
export const TIMER_SLACK_MS = 1500;
/** The client gives up here; a case that reaches it has hung. */
export const CLIENT_TIMEOUT_MS = 8000;

export type Expect =
  /** The proxy's own answer: a real status and a JSON error body with this code (any code if undefined). */
  | { kind: 'status'; status: number; code?: string }
  /** 200, the upstream's bytes relayed as they came, then exactly one error frame with this code. */
  | { kind: 'frame'; relayed: Buffer; code?: string }
  /** Not a stream the guard can read: status, headers and body bytes relayed untouched. */
  | { kind: 'verbatim'; status: number; body: Buffer; encoding?: string; decoded?: string }
  /** A healthy stream: 200 and exactly these bytes, nothing appended. */
  | { kind: 'relayed'; body: Buffer }
  /** The head was relayed and then the body broke: the client must not see a clean end. */
  | { kind: 'broken'; status: number };

export interface FaultCase {
  id: string;
  title: string;
  upstream: 'fake' | 'rst' | 'refused';
  /** What the upstream writes; then the fake upstream ends as `thenClose` says, the RST one resets. */
  raw?: Buffer[];
  thenClose?: RawResponsePlan['thenClose'];
  delayMs?: number;
  path?: string;
  options?: ProxyOptions;
  expect: Expect;
  /** The configured bound the whole answer must come within. */
  withinMs: number;
  /** The configured bound for the response head, where it differs from the whole answer. */
  headersWithinMs?: number;
}

const b = (...parts: Array<string | Buffer>): Buffer => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
const { upstreamHeadersTimeoutMs: HEADERS_MS, upstreamBodyTimeoutMs: BODY_MS, upstreamConnectTimeoutMs: CONNECT_MS } = FAULT_OPTIONS;
/**
 * For faults the proxy sees at once. Generous on purpose (all cases share one loaded process); that the
 * proxy did not wait for a timeout instead is told by the error code, not by this bound.
 */
const AT_ONCE = 2500;
const HELLO = token('Hello');
const HOLDING = [SSE_HEAD, chunk(ROLE)];
const STARTED = [SSE_HEAD, chunk(ROLE), chunk(HELLO)];
const BIG_FIRST = `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"${'x'.repeat(6000)}`;
/** The same never-ending event, 100 bytes per write. */
const TRICKLE = Array.from({ length: Math.ceil(BIG_FIRST.length / 100) }, (_, i) => BIG_FIRST.slice(100 * i, 100 * (i + 1)));
const GZ_SSE_TEXT = inBandError(500, 'server_error', 'Context size has been exceeded.');
const GZ_SSE = gzipped(GZ_SSE_TEXT);
const GZ_JSON_TEXT = '{"error":{"code":500,"message":"Context size has been exceeded.","type":"server_error"}}';
const GZ_JSON = gzipped(GZ_JSON_TEXT);
/** A native /completion stream ends with an event that echoes the whole prompt: long prompt, long event. */
const LONG_PROMPT = 'lorem ipsum '.repeat(6000);
const NATIVE_FINAL = `data: ${JSON.stringify({ content: '', stop: true, model: 'tiny.gguf', tokens_predicted: 1, prompt: LONG_PROMPT })}\n\n`;
const NATIVE_TOKEN = 'data: {"index":0,"content":"Hi","tokens":[1],"stop":false,"id_slot":0}\n\n';

export const FAULT_CASES: readonly FaultCase[] = [
  {
    id: 'connection-refused',
    title: 'nothing listens on the upstream port',
    upstream: 'refused',
    expect: { kind: 'status', status: 502, code: 'upstream_unreachable' },
    withinMs: CONNECT_MS + TIMER_SLACK_MS,
  },
  {
    id: 'reset-before-headers/fin',
    title: 'upstream takes the request and closes without a byte',
    upstream: 'fake',
    raw: [],
    thenClose: 'destroy',
    expect: { kind: 'status', status: 502, code: 'upstream_connection_lost' },
    withinMs: AT_ONCE,
  },
  {
    id: 'reset-before-headers/rst',
    title: 'upstream takes the request and resets the connection',
    upstream: 'rst',
    raw: [],
    expect: { kind: 'status', status: 502, code: 'upstream_connection_lost' },
    withinMs: AT_ONCE,
  },
  {
    id: 'reset-during-hold/fin',
    title: 'SSE head and the role chunk, then the connection closes',
    upstream: 'fake',
    raw: HOLDING,
    thenClose: 'destroy',
    expect: { kind: 'status', status: 502, code: 'upstream_connection_lost' },
    withinMs: AT_ONCE,
  },
  {
    id: 'reset-during-hold/rst',
    title: 'SSE head and the role chunk, then a reset',
    upstream: 'rst',
    raw: HOLDING,
    expect: { kind: 'status', status: 502, code: 'upstream_connection_lost' },
    withinMs: AT_ONCE,
  },
  {
    id: 'reset-mid-stream/fin',
    title: 'first token relayed, then the connection closes',
    upstream: 'fake',
    raw: STARTED,
    thenClose: 'destroy',
    expect: { kind: 'frame', relayed: b(ROLE, HELLO), code: 'upstream_connection_lost' },
    withinMs: AT_ONCE,
  },
  {
    id: 'reset-mid-stream/rst',
    title: 'first token relayed, then a reset',
    upstream: 'rst',
    raw: STARTED,
    expect: { kind: 'frame', relayed: b(ROLE, HELLO), code: 'upstream_connection_lost' },
    withinMs: AT_ONCE,
  },
  {
    id: 'no-headers',
    title: 'upstream takes the request and never answers',
    upstream: 'fake',
    raw: [],
    thenClose: 'hang',
    expect: { kind: 'status', status: 504, code: 'upstream_headers_timeout' },
    withinMs: HEADERS_MS + TIMER_SLACK_MS,
  },
  {
    id: 'partial-status-line',
    title: 'half a status line, then silence',
    upstream: 'fake',
    raw: [Buffer.from('HTTP/1.1 20')],
    thenClose: 'hang',
    expect: { kind: 'status', status: 504, code: 'upstream_headers_timeout' },
    withinMs: HEADERS_MS + TIMER_SLACK_MS,
  },
  {
    id: 'headers-then-silence',
    title: 'SSE head, then silence (body timeout shorter than the first-event timeout)',
    upstream: 'fake',
    raw: [SSE_HEAD],
    thenClose: 'hang',
    expect: { kind: 'status', status: 504, code: 'upstream_body_timeout' },
    withinMs: BODY_MS + TIMER_SLACK_MS,
  },
  {
    id: 'hold-then-silence',
    title: 'SSE head and the role chunk, then silence',
    upstream: 'fake',
    raw: HOLDING,
    thenClose: 'hang',
    expect: { kind: 'status', status: 504, code: 'upstream_body_timeout' },
    withinMs: BODY_MS + TIMER_SLACK_MS,
  },
  {
    id: 'headers-then-silence/hold-timeout-first',
    title: 'SSE head, then silence (first-event timeout shorter than the body timeout)',
    upstream: 'fake',
    raw: [SSE_HEAD],
    thenClose: 'hang',
    options: { firstEventTimeoutMs: 200, upstreamBodyTimeoutMs: 2500 },
    expect: { kind: 'frame', relayed: Buffer.alloc(0), code: 'upstream_body_timeout' },
    // The hold ends on a plain timer at 200 ms: the committed 200 must reach the client then, not when
    // the first body byte (here: the error frame, 2.5 s later) happens to push it out.
    headersWithinMs: 200 + 1300,
    withinMs: 2500 + TIMER_SLACK_MS,
  },
  {
    id: 'mid-stream-silence',
    title: 'first token relayed, then silence',
    upstream: 'fake',
    raw: STARTED,
    thenClose: 'hang',
    expect: { kind: 'frame', relayed: b(ROLE, HELLO), code: 'upstream_body_timeout' },
    withinMs: BODY_MS + TIMER_SLACK_MS,
  },
  {
    id: 'oversized-first-event',
    title: 'a first event larger than maxHoldBytes in one piece that never ends, then silence',
    upstream: 'fake',
    raw: [SSE_HEAD, chunk(BIG_FIRST)],
    thenClose: 'hang',
    options: { firstEventTimeoutMs: 10_000 },
    expect: { kind: 'frame', relayed: Buffer.from(BIG_FIRST), code: 'upstream_body_timeout' },
    // committed by the byte bound, long before the 10 s first-event timeout
    headersWithinMs: AT_ONCE,
    withinMs: BODY_MS + TIMER_SLACK_MS,
  },
  {
    id: 'oversized-first-event/trickle',
    title: 'a first event that grows 100 bytes per write past maxHoldBytes and never ends, then silence',
    upstream: 'fake',
    raw: [SSE_HEAD, ...TRICKLE.map((piece) => chunk(piece))],
    delayMs: 5,
    thenClose: 'hang',
    options: { firstEventTimeoutMs: 10_000 },
    expect: { kind: 'frame', relayed: Buffer.from(BIG_FIRST), code: 'upstream_body_timeout' },
    // 5 ms pauses take up to 20 ms each on a loaded machine; still far below the first-event timeout
    headersWithinMs: TRICKLE.length * 20 + TIMER_SLACK_MS,
    withinMs: TRICKLE.length * 20 + BODY_MS + TIMER_SLACK_MS,
  },
  {
    id: 'invalid-chunk-size/hold',
    title: 'SSE head, then a chunk-size line that is not hex',
    upstream: 'fake',
    raw: [SSE_HEAD, Buffer.from('zz\r\ndata: x\r\n')],
    thenClose: 'hang',
    expect: { kind: 'status', status: 502 },
    withinMs: AT_ONCE,
  },
  {
    id: 'invalid-chunk-size/mid-stream',
    title: 'first token relayed, then a chunk-size line that is not hex',
    upstream: 'fake',
    raw: [...STARTED, Buffer.from('zz\r\ndata: x\r\n')],
    thenClose: 'hang',
    expect: { kind: 'frame', relayed: b(ROLE, HELLO) },
    withinMs: AT_ONCE,
  },
  {
    id: 'invalid-chunk-data/mid-stream',
    title: 'first token relayed, then a chunk longer than its declared size',
    upstream: 'fake',
    raw: [...STARTED, Buffer.from('5\r\ndata: too long\r\n')],
    thenClose: 'hang',
    // the five declared bytes are valid chunk data and go out before the framing error shows
    expect: { kind: 'frame', relayed: b(ROLE, HELLO, 'data:') },
    withinMs: AT_ONCE,
  },
  {
    id: 'invalid-chunk-size/verbatim',
    title: 'a chunked 500 JSON answer whose chunk-size line is not hex',
    upstream: 'fake',
    raw: [head(500, 'Internal Server Error', [['Content-Type', 'application/json'], ['Transfer-Encoding', 'chunked']]), Buffer.from('zz\r\n{}\r\n')],
    thenClose: 'hang',
    expect: { kind: 'broken', status: 500 },
    withinMs: AT_ONCE,
  },
  {
    id: 'truncated-chunk/mid-stream',
    title: 'first token relayed, then half a chunk and FIN',
    upstream: 'fake',
    raw: [...STARTED, Buffer.from('40\r\ndata: {"choi')],
    thenClose: 'end',
    expect: { kind: 'frame', relayed: b(ROLE, HELLO, 'data: {"choi') },
    withinMs: AT_ONCE,
  },
  {
    id: 'short-content-length/mid-stream',
    title: 'an SSE body with Content-Length: 4000 that stops after the first token',
    upstream: 'fake',
    raw: [head(200, 'OK', [['Content-Type', 'text/event-stream'], ['Content-Length', '4000']]), Buffer.from(ROLE + HELLO)],
    thenClose: 'end',
    expect: { kind: 'frame', relayed: b(ROLE, HELLO) },
    withinMs: AT_ONCE,
  },
  {
    id: 'gzip-sse-error',
    title: 'Content-Encoding: gzip on a 200 text/event-stream that carries an in-band error',
    upstream: 'fake',
    raw: [
      head(200, 'OK', [['Content-Type', 'text/event-stream'], ['Content-Encoding', 'gzip'], ['Content-Length', String(GZ_SSE.length)]]),
      GZ_SSE,
    ],
    thenClose: 'end',
    // The guard reads identity-coded streams only (guarded-exchange.ts isReadableEventStream): the body
    // goes through untouched and a client that decodes it meets the in-band error frame.
    expect: { kind: 'verbatim', status: 200, body: GZ_SSE, encoding: 'gzip', decoded: GZ_SSE_TEXT },
    withinMs: AT_ONCE,
  },
  {
    id: 'gzip-json-500',
    title: 'Content-Encoding: gzip on a 500 JSON error',
    upstream: 'fake',
    raw: [
      head(500, 'Internal Server Error', [['Content-Type', 'application/json'], ['Content-Encoding', 'gzip'], ['Content-Length', String(GZ_JSON.length)]]),
      GZ_JSON,
    ],
    thenClose: 'end',
    expect: { kind: 'verbatim', status: 500, body: GZ_JSON, encoding: 'gzip', decoded: GZ_JSON_TEXT },
    withinMs: AT_ONCE,
  },
  {
    id: 'garbage/hang',
    title: 'an SSH banner and binary bytes instead of HTTP, connection left open',
    upstream: 'fake',
    raw: [Buffer.from('SSH-2.0-OpenSSH_9.6\r\n'), Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 0x0d, 0x0a])],
    thenClose: 'hang',
    expect: { kind: 'status', status: 502 },
    withinMs: AT_ONCE,
  },
  {
    id: 'garbage/close',
    title: 'TLS handshake bytes instead of HTTP, then FIN',
    upstream: 'fake',
    raw: [Buffer.from([0x16, 0x03, 0x03, 0x00, 0x2a, 0x02, 0x00, 0x00, 0x26, 0x03, 0x03, ...Array.from({ length: 32 }, (_, i) => (i * 37) & 0xff)])],
    thenClose: 'end',
    expect: { kind: 'status', status: 502 },
    withinMs: AT_ONCE,
  },
  {
    id: 'oversized-headers',
    title: 'a response head with a 64 KiB header, then silence',
    upstream: 'fake',
    raw: [Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Padding: ${'p'.repeat(65536)}\r\n`)],
    thenClose: 'hang',
    expect: { kind: 'status', status: 502 },
    withinMs: AT_ONCE,
  },
  {
    id: 'control/healthy-after-faults',
    title: 'control: a healthy chat stream',
    upstream: 'fake',
    raw: sseResponse(healthyEvents(3)),
    thenClose: 'end',
    expect: { kind: 'relayed', body: Buffer.from(healthyEvents(3).join('')) },
    withinMs: AT_ONCE,
  },
  {
    id: 'control/long-final-event',
    title: 'control: a healthy native /completion stream whose final event (prompt echo) is larger than maxHoldBytes',
    upstream: 'fake',
    path: '/completion',
    raw: sseResponse([NATIVE_TOKEN, NATIVE_FINAL]),
    thenClose: 'end',
    options: { maxHoldBytes: 65536 },
    expect: { kind: 'relayed', body: Buffer.from(NATIVE_TOKEN + NATIVE_FINAL) },
    withinMs: AT_ONCE,
  },
];

/** The healthy exchange run after every fault, through the same proxy, to show it still works. */
const HEALTHY_EVENTS = [ROLE, token('ok'), FINISH, DONE];
const HEALTHY = { raw: sseResponse(HEALTHY_EVENTS), body: Buffer.from(HEALTHY_EVENTS.join('')) };

/** GET /health from the sidecar's readiness probe: ready, so it settles on the long interval. */
const HEALTH_OK = Buffer.concat([head(200, 'OK', [['Content-Type', 'application/json'], ['Content-Length', '15'], ['Connection', 'close']]), Buffer.from('{"status":"ok"}')]);

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface FaultResult {
  case: FaultCase;
  seen: Seen;
  checks: Check[];
  /** After the fault, the same proxy's /-/live answered 200 and (unless the upstream is down) a healthy stream went through. */
  after: Check[];
  /** Log lines at warn level or above, and log lines that were not JSON. */
  badLogs: unknown[];
}

function check(name: string, ok: boolean, detail = ''): Check {
  return { name, ok, detail };
}

/** What the client must see for the case, one named check per property. */
export function judge(fc: FaultCase, seen: Seen): Check[] {
  const x = fc.expect;
  const checks: Check[] = [
    check('the client did not time out (no hang)', seen.end !== 'timeout', `end=${seen.end} after ${Math.round(seen.ms)} ms`),
    check(`answered within ${fc.withinMs} ms`, seen.ms <= fc.withinMs, `${Math.round(seen.ms)} ms`),
  ];
  if (fc.headersWithinMs !== undefined) {
    const at = seen.headersMs ?? Infinity;
    checks.push(check(`response head within ${fc.headersWithinMs} ms`, at <= fc.headersWithinMs, `${Math.round(at)} ms`));
  }
  const body = seen.body;
  switch (x.kind) {
    case 'status': {
      const json = jsonOf(body);
      const code = errorCode(json);
      checks.push(check(`status ${x.status}`, seen.status === x.status && seen.end === 'complete', `status=${seen.status} end=${seen.end}`));
      checks.push(check('JSON error body', /application\/json/.test(String(seen.headers['content-type'])) && typeof code === 'string', body.toString('utf8').slice(0, 200)));
      if (x.code !== undefined) checks.push(check(`error code ${x.code}`, code === x.code, `code=${String(code)}`));
      break;
    }
    case 'frame': {
      const relayedOk = body.subarray(0, x.relayed.length).equals(x.relayed);
      const rest = body.subarray(x.relayed.length).toString('utf8');
      const frame = /^(?:\r?\n)*data: (\{.*\})\n\n$/.exec(rest);
      const code = errorCode(frame ? jsonOf(Buffer.from(frame[1] ?? '')) : undefined);
      checks.push(check('status 200, stream ended', seen.status === 200 && seen.end === 'complete', `status=${seen.status} end=${seen.end}`));
      checks.push(check('upstream bytes relayed unchanged', relayedOk, `got ${body.length} bytes, first ${body.subarray(0, 80).toString('utf8')}`));
      checks.push(check('exactly one error frame at the end', frame !== null && typeof code === 'string', JSON.stringify(rest.slice(-300))));
      checks.push(check('the frame is the last event an SSE client reads', errorCode(lastEventData(body)) === code, ''));
      if (x.code !== undefined) checks.push(check(`frame code ${x.code}`, code === x.code, `code=${String(code)}`));
      break;
    }
    case 'verbatim': {
      checks.push(check(`status ${x.status}, ended`, seen.status === x.status && seen.end === 'complete', `status=${seen.status} end=${seen.end}`));
      checks.push(check('body bytes untouched', body.equals(x.body), `${body.length} bytes vs ${x.body.length}`));
      if (x.encoding !== undefined) checks.push(check(`Content-Encoding: ${x.encoding} kept`, seen.headers['content-encoding'] === x.encoding, String(seen.headers['content-encoding'])));
      if (x.decoded !== undefined) {
        let decoded = '';
        try {
          decoded = gunzipSync(body).toString('utf8');
        } catch (err) {
          decoded = `(not gzip: ${(err as Error).message})`;
        }
        checks.push(check('decodes to the upstream error', decoded === x.decoded, decoded.slice(0, 200)));
      }
      break;
    }
    case 'relayed':
      checks.push(check('status 200, stream ended', seen.status === 200 && seen.end === 'complete', `status=${seen.status} end=${seen.end}`));
      checks.push(check('exactly the upstream bytes, nothing appended', body.equals(x.body), `${body.length} bytes vs ${x.body.length}; tail ${JSON.stringify(body.subarray(-200).toString('utf8'))}`));
      break;
    case 'broken':
      checks.push(check('no clean end: the client sees the break', seen.end === 'cut' || seen.end === 'failed', `end=${seen.end} status=${seen.status}`));
      checks.push(check(`status ${x.status} or none`, seen.status === undefined || seen.status === x.status, `status=${seen.status}`));
      break;
  }
  return checks;
}

/** The upstreams and proxies of a fault run; one proxy per distinct upstream and option set. */
export class FaultBench {
  #fake: FakeUpstream | undefined;
  #rst: RstUpstream | undefined;
  #dead: number | undefined;
  readonly #proxies = new Map<string, Promise<RunningProxy>>();
  /** Plans by x-plan header, so concurrent cases never take each other's. */
  readonly #plans = new Map<string, RawResponsePlan>();
  readonly #rstPlans = new Map<string, Buffer[]>();
  #next = 0;

  /** Starts the upstreams once, before any case runs, so concurrent cases never race to start them. */
  async start(): Promise<void> {
    this.#dead ??= await deadPort();
    this.#rst ??= await startRstUpstream((h) => this.#rstPlans.get(h['x-plan'] ?? '') ?? HEALTHY.raw);
    this.#fake ??= await startFakeUpstream({
      onRequest: (req) => this.#plans.get(req.headers['x-plan'] ?? '') ?? (req.method === 'GET' ? { raw: [HEALTH_OK] } : undefined),
    });
  }

  async #upstreamUrl(kind: FaultCase['upstream']): Promise<string> {
    await this.start();
    if (kind === 'refused') return `http://127.0.0.1:${this.#dead}`;
    return (kind === 'rst' ? this.#rst : this.#fake)?.url ?? '';
  }

  /** Every case at once: they are independent, and the silences then cost one timeout, not one each. */
  async runAll(cases: readonly FaultCase[]): Promise<FaultResult[]> {
    await this.start();
    return Promise.all(cases.map((fc) => this.run(fc)));
  }

  async proxyFor(fc: FaultCase): Promise<RunningProxy> {
    const upstream = await this.#upstreamUrl(fc.upstream);
    const options: ProxyOptions = { ...FAULT_OPTIONS, ...fc.options, upstream };
    const key = JSON.stringify(options);
    // the promise is cached, so cases started together share one proxy
    let proxy = this.#proxies.get(key);
    if (proxy === undefined) {
      proxy = startProxy(options);
      this.#proxies.set(key, proxy);
    }
    return proxy;
  }

  #plan(fc: Pick<FaultCase, 'upstream' | 'raw' | 'thenClose' | 'delayMs'>): string {
    const id = `p${++this.#next}`;
    const raw = fc.raw ?? [];
    if (fc.upstream === 'rst') this.#rstPlans.set(id, raw);
    else this.#plans.set(id, { raw, thenClose: fc.thenClose ?? 'end', ...(fc.delayMs !== undefined ? { delayMs: fc.delayMs } : {}) });
    return id;
  }

  async run(fc: FaultCase): Promise<FaultResult> {
    const proxy = await this.proxyFor(fc);
    const logsBefore = proxy.logs.length;
    const seen = await send(proxy.url, fc.path ?? '/v1/chat/completions', { headers: { 'x-plan': this.#plan(fc) }, timeoutMs: CLIENT_TIMEOUT_MS });
    const after: Check[] = [];
    const live = await send(proxy.url, '/-/live', { method: 'GET', timeoutMs: CLIENT_TIMEOUT_MS });
    after.push(check('the proxy still answers /-/live', live.status === 200 && live.end === 'complete', `status=${live.status} end=${live.end}`));
    if (fc.upstream !== 'refused') {
      const plan = this.#plan({ upstream: fc.upstream, raw: HEALTHY.raw, thenClose: 'end' });
      const ok = await send(proxy.url, '/v1/chat/completions', { headers: { 'x-plan': plan }, timeoutMs: CLIENT_TIMEOUT_MS });
      after.push(check('a healthy stream still goes through', ok.status === 200 && ok.end === 'complete' && ok.body.equals(HEALTHY.body), `status=${ok.status} end=${ok.end}`));
    }
    const badLogs = proxy.logs.slice(logsBefore).filter((l) => l.unparsed === true || (typeof l.level === 'number' && l.level >= 40));
    return { case: fc, seen, checks: judge(fc, seen), after, badLogs };
  }

  async close(): Promise<void> {
    for (const p of this.#proxies.values()) await (await p).stop();
    this.#proxies.clear();
    await this.#fake?.close();
    await this.#rst?.close();
  }
}

