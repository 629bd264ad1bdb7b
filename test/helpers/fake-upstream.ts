// A fake llama-server on a raw TCP socket. node:http cannot be used here: it would reframe
// the body, fix up headers and refuse to write the broken framings the proxy must survive.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { ALL_FIXTURES } from '../fixtures/catalogue.js';
import type { UpstreamFixture } from '../fixtures/types.js';
import { prng } from './prng.js';

export interface RecordedRequest {
  /** 1-based arrival order over all connections. */
  index: number;
  method: string;
  /** Request target as sent, query string included. */
  path: string;
  httpVersion: string;
  /** Lower-cased names; repeated fields joined with ', '. */
  headers: Record<string, string>;
  rawHeaders: ReadonlyArray<readonly [string, string]>;
  /** Decoded body (chunked transfer coding removed). */
  body: Buffer;
  /** performance.now() when the last byte of the request arrived. */
  receivedAt: number;
  /** The connection it came on: 1-based accept order, and performance.now() at the accept. */
  connection: { index: number; acceptedAt: number };
  /**
   * performance.now() when the client ended or closed the connection while this exchange
   * was still open on our side (response still being written, or deliberately hanging).
   */
  closedAt?: number;
  /** Every byte of the planned response was written. */
  completed: boolean;
  /** The fixture that answered, if one did. */
  fixtureId?: string;
}

export interface RawResponsePlan {
  raw: Buffer[];
  /** Pause between two writes. */
  delayMs?: number;
  /** 'end' sends FIN, 'destroy' drops the socket without a half-close, 'hang' leaves it open. */
  thenClose?: 'end' | 'destroy' | 'hang';
}

export interface FakeUpstreamOptions {
  fixture?: UpstreamFixture;
  /** Runs first for every request; returning undefined falls back to x-fixture / opts.fixture. */
  onRequest?: (req: RecordedRequest) => UpstreamFixture | RawResponsePlan | undefined;
}

export interface FakeUpstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /**
   * Resolves once the n-th request (1-based) has fully arrived. Without n it returns the
   * next request not yet handed out, so a request that arrived before the call is not missed.
   */
  waitForRequest(n?: number): Promise<RecordedRequest>;
  /** Resolves with closedAt, or with the time the connection closed for any other reason. */
  waitForClose(req: RecordedRequest): Promise<number>;
  close(): Promise<void>;
}

/** Listens on 127.0.0.1 on a free port and resolves with it. */
export function listenOnLoopback(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

// ---- serialisation -------------------------------------------------------------------

function serializeHead(fx: UpstreamFixture): Buffer {
  const lines = [`HTTP/1.1 ${fx.status} ${fx.reason}`, ...fx.headers.map(([k, v]) => `${k}: ${v}`)];
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n', 'utf8');
}

function frameChunk(payload: string): Buffer {
  const bytes = Buffer.from(payload, 'utf8');
  return Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]);
}

const TERMINATOR = Buffer.from('0\r\n\r\n');

/** The body bytes as they travel on the wire, chunk framing included. */
export function serializeBody(fx: UpstreamFixture): Buffer {
  if (fx.body.kind === 'fixed') return Buffer.from(fx.body.text, 'utf8');
  const framed = fx.body.chunks.map(frameChunk);
  if (fx.body.end === 'clean') framed.push(TERMINATOR);
  return Buffer.concat(framed);
}

export function serializeFixture(fx: UpstreamFixture): Buffer {
  return Buffer.concat([serializeHead(fx), serializeBody(fx)]);
}

/** What an HTTP client sees as the body: the chunk payloads joined. */
export function sseBody(fx: UpstreamFixture): Buffer {
  if (fx.body.kind === 'fixed') return Buffer.from(fx.body.text, 'utf8');
  return Buffer.from(fx.body.chunks.join(''), 'utf8');
}

// ---- request parsing -----------------------------------------------------------------

interface ParsedHead {
  method: string;
  path: string;
  httpVersion: string;
  rawHeaders: Array<readonly [string, string]>;
  headers: Record<string, string>;
  bodyStart: number;
}

class BadRequest extends Error {}

function parseHead(buf: Buffer): ParsedHead | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    if (buf.length > 65536) throw new BadRequest('request head too large');
    return undefined;
  }
  const [requestLine = '', ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^(\S+) (\S+) HTTP\/(\d\.\d)$/.exec(requestLine);
  if (!m) throw new BadRequest(`bad request line: ${requestLine}`);
  const rawHeaders: Array<readonly [string, string]> = [];
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new BadRequest(`bad header line: ${line}`);
    const name = line.slice(0, colon);
    const value = line.slice(colon + 1).trim();
    rawHeaders.push([name, value]);
    const key = name.toLowerCase();
    headers[key] = key in headers ? `${headers[key]}, ${value}` : value;
  }
  return { method: m[1]!, path: m[2]!, httpVersion: m[3]!, rawHeaders, headers, bodyStart: end + 4 };
}

/** Returns the decoded body and where the next request starts, or undefined if incomplete. */
function decodeChunked(buf: Buffer, start: number): { body: Buffer; next: number } | undefined {
  const parts: Buffer[] = [];
  let pos = start;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', pos);
    if (lineEnd < 0) return undefined;
    const sizeText = buf.subarray(pos, lineEnd).toString('latin1').split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new BadRequest(`bad chunk size: ${sizeText}`);
    const size = parseInt(sizeText, 16);
    if (size === 0) return skipTrailers(buf, lineEnd + 2, parts);
    if (buf.length < lineEnd + 2 + size + 2) return undefined;
    if (buf[lineEnd + 2 + size] !== 0x0d || buf[lineEnd + 3 + size] !== 0x0a) throw new BadRequest('chunk data not followed by CRLF');
    parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
    pos = lineEnd + 2 + size + 2;
  }
}

function skipTrailers(buf: Buffer, pos: number, parts: Buffer[]): { body: Buffer; next: number } | undefined {
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', pos);
    if (lineEnd < 0) return undefined;
    if (lineEnd === pos) return { body: Buffer.concat(parts), next: lineEnd + 2 };
    pos = lineEnd + 2;
  }
}

function readBody(buf: Buffer, head: ParsedHead): { body: Buffer; next: number } | undefined {
  if (/\bchunked\b/i.test(head.headers['transfer-encoding'] ?? '')) return decodeChunked(buf, head.bodyStart);
  const lengthText = head.headers['content-length'];
  if (lengthText === undefined) return { body: Buffer.alloc(0), next: head.bodyStart };
  if (!/^\d+$/.test(lengthText)) throw new BadRequest(`bad content-length: ${lengthText}`);
  const end = head.bodyStart + Number(lengthText);
  if (buf.length < end) return undefined;
  return { body: Buffer.from(buf.subarray(head.bodyStart, end)), next: end };
}

// ---- write plans ---------------------------------------------------------------------

type Finish = 'end' | 'destroy' | 'hang' | 'keep-alive';

interface WritePlan {
  head?: Buffer;
  /** Chunks (framed), the fixed body, or raw writes: what x-fixture-hang-after counts. */
  parts: Buffer[];
  /** The terminating chunk, kept apart so hang-after can withhold it. */
  tail?: Buffer;
  delayMs: number;
  finish: Finish;
}

function isRawPlan(x: UpstreamFixture | RawResponsePlan): x is RawResponsePlan {
  return 'raw' in x;
}

function fixturePlan(fx: UpstreamFixture): WritePlan {
  const closes = fx.headers.some(([k, v]) => k.toLowerCase() === 'connection' && /\bclose\b/i.test(v));
  if (fx.body.kind === 'fixed') {
    const body = Buffer.from(fx.body.text, 'utf8');
    return { head: serializeHead(fx), parts: body.length ? [body] : [], delayMs: 0, finish: closes ? 'end' : 'keep-alive' };
  }
  // llama-server closes the connection after every stream, whatever Keep-Alive says.
  const plan: WritePlan = { head: serializeHead(fx), parts: fx.body.chunks.map(frameChunk), delayMs: 0, finish: 'end' };
  if (fx.body.end === 'clean') plan.tail = TERMINATOR;
  return plan;
}

function rawPlan(p: RawResponsePlan): WritePlan {
  return { parts: [...p.raw], delayMs: p.delayMs ?? 0, finish: p.thenClose ?? 'end' };
}

function errorFixture(status: 404 | 500, message: string): UpstreamFixture {
  const type = status === 404 ? 'not_found_error' : 'server_error';
  const text = JSON.stringify({ error: { message: `fake upstream: ${message}`, type, code: status } });
  return {
    id: 'fake-upstream-error',
    title: message,
    source: 'fake-upstream',
    emulates: 'llama-server b11669 error framing',
    method: '',
    path: '',
    status,
    reason: status === 404 ? 'Not Found' : 'Internal Server Error',
    headers: [
      ['Server', 'llama.cpp'],
      ['Content-Type', 'application/json; charset=utf-8'],
      ['Content-Length', String(Buffer.byteLength(text))],
      ['Connection', 'close'],
    ],
    body: { kind: 'fixed', text },
  };
}

function nonNegativeInt(headers: Record<string, string>, name: string): number | undefined {
  const text = headers[name];
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text.trim())) throw new Error(`${name} must be a non-negative integer, got ${text}`);
  return Number(text.trim());
}

/** Applies the x-fixture-* request headers that shape timing and truncation. */
function applyControls(plan: WritePlan, headers: Record<string, string>): { plan: WritePlan; withheld: boolean } {
  const delay = nonNegativeInt(headers, 'x-fixture-chunk-delay-ms');
  if (delay !== undefined) plan.delayMs = delay;
  const hangAfter = nonNegativeInt(headers, 'x-fixture-hang-after');
  if (hangAfter === undefined) return { plan, withheld: false };
  const withheld = hangAfter < plan.parts.length || plan.tail !== undefined;
  return { plan: { ...plan, parts: plan.parts.slice(0, hangAfter), tail: undefined, finish: 'hang' }, withheld };
}

// ---- split writes --------------------------------------------------------------------

type SplitMode = { kind: 'whole' } | { kind: 'bytes' } | { kind: 'random'; next: () => number };

function parseSplit(value: string | undefined): SplitMode {
  if (value === undefined) return { kind: 'whole' };
  if (value === 'bytes') return { kind: 'bytes' };
  const m = /^random:(.+)$/.exec(value);
  if (!m) throw new Error(`x-fixture-split must be 'bytes' or 'random:<seed>', got ${value}`);
  return { kind: 'random', next: prng(hashSeed(m[1]!)).next };
}

// FNV-1a, so that any seed text (not only numbers) gives a reproducible sequence.
function hashSeed(seed: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(seed, 'utf8')) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h || 1;
}

function cut(buf: Buffer, mode: SplitMode): Buffer[] {
  if (mode.kind === 'whole') return [buf];
  const pieces: Buffer[] = [];
  for (let pos = 0; pos < buf.length; ) {
    const size = mode.kind === 'bytes' ? 1 : 1 + (mode.next() % 7);
    pieces.push(buf.subarray(pos, pos + size));
    pos += size;
  }
  return pieces;
}

/**
 * Groups the writes into runs separated by the chunk delay. Without a delay the whole
 * response is one run, so split mode can cut across chunk boundaries.
 */
function runs(plan: WritePlan): Buffer[][] {
  const writes = [...plan.parts, ...(plan.tail ? [plan.tail] : [])];
  const out: Buffer[][] = [plan.head ? [plan.head] : []];
  writes.forEach((w, i) => {
    if (i > 0 && plan.delayMs > 0) out.push([]);
    out[out.length - 1]!.push(w);
  });
  return out.filter((r) => r.length > 0);
}

// ---- the server ----------------------------------------------------------------------

interface Conn {
  socket: net.Socket;
  index: number;
  acceptedAt: number;
  buf: Buffer;
  /** An exchange is open: its response is being written or deliberately hanging. */
  current?: RecordedRequest;
  continued: boolean;
  gone: boolean;
  onClose: Promise<number>;
}

/**
 * Listens on 127.0.0.1, port 0. The answer comes from opts.onRequest, else the fixture named
 * by the `x-fixture` request header, else opts.fixture, else a 404. Request headers that a
 * proxy forwards unchanged shape the reply:
 * - `x-fixture-chunk-delay-ms: N` pauses N ms between chunks (or raw writes);
 * - `x-fixture-hang-after: K` writes the head and K chunks, then keeps the socket open,
 *   silent, until the client leaves (the terminating chunk counts as withheld);
 * - `x-fixture-split: bytes | random:<seed>` writes the response 1 byte, or 1..7 bytes, at a
 *   time, yielding to the event loop in between, so reads end inside CRLF and UTF-8.
 */
export async function startFakeUpstream(opts: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const requests: RecordedRequest[] = [];
  const connOf = new Map<RecordedRequest, Conn>();
  const conns = new Set<Conn>();
  let accepted = 0;
  const timers = new Set<NodeJS.Timeout>();
  const waiters: Array<{ n: number; resolve: (r: RecordedRequest) => void; reject: (e: Error) => void }> = [];
  let cursor = 0;
  let closing = false;

  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });
  const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  function markClientGone(conn: Conn): void {
    if (conn.gone) return;
    conn.gone = true;
    // Sockets we destroy in close() are not the client leaving.
    if (!closing && conn.current && conn.current.closedAt === undefined) conn.current.closedAt = performance.now();
  }

  function pick(req: RecordedRequest): UpstreamFixture | RawResponsePlan | string {
    const custom = opts.onRequest?.(req);
    if (custom) return custom;
    const id = req.headers['x-fixture'];
    if (id === undefined) return opts.fixture ?? `no fixture for ${req.method} ${req.path}`;
    return ALL_FIXTURES.find((f) => f.id === id) ?? `no fixture with id ${id}`;
  }

  function prepare(req: RecordedRequest): { plan: WritePlan; split: SplitMode; withheld: boolean } {
    try {
      const split = parseSplit(req.headers['x-fixture-split']);
      const source = pick(req);
      if (typeof source === 'string') return { plan: fixturePlan(errorFixture(404, source)), split, withheld: false };
      if (!isRawPlan(source)) req.fixtureId = source.id;
      const base = isRawPlan(source) ? rawPlan(source) : fixturePlan(source);
      if (base.finish === 'keep-alive' && /\bclose\b/i.test(req.headers['connection'] ?? '')) base.finish = 'end';
      return { ...applyControls(base, req.headers), split };
    } catch (err) {
      // A bad control header or a throwing onRequest is a test bug: answer loudly, keep running.
      return { plan: fixturePlan(errorFixture(500, (err as Error).message)), split: { kind: 'whole' }, withheld: false };
    }
  }

  async function play(conn: Conn, req: RecordedRequest): Promise<void> {
    const { plan, split, withheld } = prepare(req);
    const { socket } = conn;
    for (const [i, run] of runs(plan).entries()) {
      if (i > 0) await sleep(plan.delayMs);
      if (conn.gone || closing) return;
      if (split.kind === 'whole') {
        for (const w of run) socket.write(w);
        continue;
      }
      for (const piece of cut(Buffer.concat(run), split)) {
        if (conn.gone || closing) return;
        socket.write(piece);
        await yieldToLoop();
      }
    }
    req.completed = !withheld;
    finish(conn, plan.finish);
  }

  function finish(conn: Conn, how: Finish): void {
    const { socket } = conn;
    if (how === 'hang') return;
    conn.current = undefined;
    if (how === 'end') socket.end();
    // Waiting for the flush keeps 'destroy' from discarding bytes the test asked for.
    else if (how === 'destroy') socket.write(Buffer.alloc(0), () => socket.destroy());
    else pump(conn);
  }

  function record(conn: Conn, head: ParsedHead, body: Buffer): RecordedRequest {
    const req: RecordedRequest = {
      index: requests.length + 1,
      method: head.method,
      path: head.path,
      httpVersion: head.httpVersion,
      headers: head.headers,
      rawHeaders: head.rawHeaders,
      body,
      receivedAt: performance.now(),
      connection: { index: conn.index, acceptedAt: conn.acceptedAt },
      completed: false,
    };
    requests.push(req);
    connOf.set(req, conn);
    for (const w of [...waiters]) {
      if (w.n <= requests.length) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(requests[w.n - 1]!);
      }
    }
    return req;
  }

  /** Parses and answers the next buffered request unless an exchange is open. */
  function pump(conn: Conn): void {
    if (conn.current || conn.gone || closing) return;
    let head: ParsedHead | undefined;
    let body: { body: Buffer; next: number } | undefined;
    try {
      head = parseHead(conn.buf);
      if (!head) return;
      body = readBody(conn.buf, head);
    } catch {
      conn.socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      conn.gone = true;
      return;
    }
    if (!body) {
      if (!conn.continued && /100-continue/i.test(head.headers['expect'] ?? '')) {
        conn.continued = true;
        conn.socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      }
      return;
    }
    conn.buf = conn.buf.subarray(body.next);
    conn.continued = false;
    const req = record(conn, head, body.body);
    conn.current = req;
    void play(conn, req);
  }

  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.setNoDelay(true);
    let resolveClose: (t: number) => void = () => undefined;
    const conn: Conn = {
      socket,
      index: ++accepted,
      acceptedAt: performance.now(),
      buf: Buffer.alloc(0),
      continued: false,
      gone: false,
      onClose: new Promise<number>((resolve) => (resolveClose = resolve)),
    };
    conns.add(conn);
    socket.on('data', (data: Buffer) => {
      conn.buf = Buffer.concat([conn.buf, data]);
      pump(conn);
    });
    // A half-close counts as leaving, as it does for llama-server (history §7).
    socket.on('end', () => {
      markClientGone(conn);
      if (!socket.destroyed) socket.end();
    });
    socket.on('error', () => markClientGone(conn));
    socket.on('close', () => {
      markClientGone(conn);
      conns.delete(conn);
      resolveClose(performance.now());
    });
  });

  const port = await listenOnLoopback(server);

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    waitForRequest(n?: number): Promise<RecordedRequest> {
      const target = n ?? cursor + 1;
      cursor = Math.max(cursor, target);
      const ready = requests[target - 1];
      if (ready) return Promise.resolve(ready);
      if (closing) return Promise.reject(new Error('fake upstream closed'));
      return new Promise((resolve, reject) => waiters.push({ n: target, resolve, reject }));
    },
    waitForClose(req: RecordedRequest): Promise<number> {
      const conn = connOf.get(req);
      if (!conn) return Promise.reject(new Error(`request ${req.index} was not recorded by this upstream`));
      return conn.onClose.then((t) => req.closedAt ?? t);
    },
    async close(): Promise<void> {
      closing = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const w of waiters.splice(0)) w.reject(new Error('fake upstream closed'));
      for (const conn of conns) conn.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
