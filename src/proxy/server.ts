/**
 * The HTTP server: routes each request to the proxy's own endpoints, the guard or the pass-through,
 * gates API traffic on readiness, and drains on shutdown.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { Config } from '../config.js';
import type { Logger, RequestRecord } from '../log.js';
import { dialectOf, guardedDialect, OWN_PREFIX, pathOf, type Dialect } from '../routes.js';
import { ownError } from '../error-response.js';
import { BodyTooLargeError } from '../errors.js';
import { GuardedExchange } from './guarded-exchange.js';
import { createPassthrough, type Passthrough } from './passthrough.js';
import { upstreamRequestHeaders } from './headers.js';
import { sendAnswer, sendJson } from './answer.js';
import type { Readiness } from './readiness.js';
import { Metrics } from '../metrics.js';
import { createKeyCheck, type KeyCheck } from './api-key.js';
import { buildConnector, Pool } from './undici-parts.js';
import { SpareConnections } from './spare-connections.js';
import { withQuietResets } from './quiet-resets.js';

export interface ProxyServerOptions {
  readonly config: Config;
  readonly upstream: URL;
  readonly log: Logger;
  readonly readiness: Readiness;
  /** Hold API requests while the upstream is not ready (supervised mode); sidecar mode only reports it. */
  readonly gateTraffic: boolean;
  /** Supervised mode: the child's restarts by reason, for the metrics. */
  readonly restarts?: () => Readonly<Partial<Record<string, number>>>;
}

interface InFlight {
  terminate(status: number, message: string, code: string): void;
}

export class ProxyServer {
  readonly #opts: ProxyServerOptions;
  readonly #server: Server;
  readonly #pool: Pool;
  readonly #spares: SpareConnections | undefined;
  readonly #passthrough: Passthrough;
  readonly #inFlight = new Set<InFlight>();
  #guardedInFlight = 0;
  #draining = false;
  readonly metrics: Metrics;
  readonly #keyCheck: KeyCheck | undefined;
  /** Upstream bytes received by guarded exchanges; see ExchangeOptions.progress. */
  readonly progress = { bytes: 0 };

  constructor(opts: ProxyServerOptions) {
    this.#opts = opts;
    const c = opts.config;
    const connect = withQuietResets(buildConnector({ timeout: c.upstreamConnectTimeoutMs }));
    const spares =
      c.upstreamSpareConnections > 0
        ? new SpareConnections(connect, { count: c.upstreamSpareConnections, maxIdleMs: SPARE_MAX_IDLE_MS })
        : undefined;
    this.#spares = spares;
    this.metrics = new Metrics({
      inFlight: () => this.#guardedInFlight,
      upstreamState: () => (this.#draining ? 'stopping' : opts.readiness.state()),
      upstreamReady: () => opts.readiness.isReady(),
      ...(opts.restarts ? { restarts: opts.restarts } : {}),
      ...(spares ? { spares: () => spares.outcomes() } : {}),
    });
    this.#pool = new Pool(opts.upstream.origin, {
      connect: spares?.connect ?? connect,
      headersTimeout: c.upstreamHeadersTimeoutMs,
      bodyTimeout: c.upstreamBodyTimeoutMs,
    });
    this.#keyCheck = c.apiKey !== undefined ? createKeyCheck(c.apiKey) : undefined;
    this.#passthrough = createPassthrough(opts.upstream, { headersTimeoutMs: c.upstreamHeadersTimeoutMs });
    this.#server = createServer(
      {
        headersTimeout: c.clientHeadersTimeoutMs,
        requestTimeout: c.clientRequestTimeoutMs,
        // Node checks the two timeouts above on this period (30 s by default, too coarse for them).
        connectionsCheckingInterval: Math.min(1000, c.clientHeadersTimeoutMs),
        keepAliveTimeout: 65_000, // longer than the usual 60 s idle of load balancers in front
        noDelay: true,
      },
      (req, res) => this.#route(req, res),
    );
    // SSE streams may be quiet between pings for a long time; the upstream timeouts bound silence instead.
    this.#server.timeout = 0;
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#clientError(err, socket));
  }

  get draining(): boolean {
    return this.#draining;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  listen(): Promise<AddressInfo> {
    const { host, port } = this.#opts.config;
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  /**
   * Refuse new requests (503), give the ones in flight `drainTimeoutMs` to finish, then end the rest with
   * an error the client can see, and close every connection.
   */
  async drain(): Promise<void> {
    this.#draining = true;
    this.#server.closeIdleConnections();
    const deadline = Date.now() + this.#opts.config.drainTimeoutMs;
    while (this.#inFlight.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      this.#server.closeIdleConnections();
    }
    for (const exchange of this.#inFlight) {
      exchange.terminate(503, 'llama-status-proxy is shutting down', 'shutting_down');
    }
    // Listening until now: during the drain new requests and probes get a 503, not a refused connection.
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
    this.#passthrough.close();
    this.#spares?.close();
    await this.#pool.close().catch(() => undefined);
  }

  #route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const path = pathOf(url);
    if (path === '/-/live' || path === '/-/ready') {
      this.#own(path, res); // probes never need the key
      return;
    }
    if (this.#keyCheck !== undefined && !this.#keyCheck(req.headers)) {
      const answer = ownError(401, dialectOf(url), 'invalid or missing API key', 'invalid_api_key');
      this.#refuse(req, res, answer, ['WWW-Authenticate', 'Bearer']);
      return;
    }
    if (path.startsWith(OWN_PREFIX)) {
      this.#own(path, res);
      return;
    }
    if (this.#draining) {
      this.#refuse(req, res, ownError(503, dialectOf(url), 'llama-status-proxy is shutting down', 'shutting_down'));
      return;
    }
    if (this.#opts.gateTraffic && !this.#opts.readiness.isReady()) {
      void this.#whenReady(req, res);
      return;
    }
    this.#forward(req, res);
  }

  async #whenReady(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ready = await this.#opts.readiness.waitReady(this.#opts.config.readyWaitMs);
    if (res.destroyed) return;
    if (ready && !this.#draining) {
      this.#forward(req, res);
      return;
    }
    const message = `llama-server is not ready (${this.#opts.readiness.state()}); retry later`;
    this.#refuse(req, res, ownError(503, dialectOf(req.url ?? '/'), message, 'upstream_not_ready'));
  }

  #forward(req: IncomingMessage, res: ServerResponse): void {
    const c = this.#opts.config;
    const body = requestBody(req, c.maxBodyBytes);
    if (body instanceof BodyTooLargeError) {
      // The body stays unread, so this connection cannot carry another request.
      this.#refuse(req, res, ownError(413, dialectOf(req.url ?? '/'), body.message, body.code), ['Connection', 'close']);
      return;
    }
    const dialect = guardedDialect(req.method ?? 'GET', req.url ?? '/');
    if (dialect === undefined) this.#passthroughRequest(req, res);
    else this.#guard(req, res, dialect, body);
  }

  /** A completion request: a GuardedExchange per request, the body sent whole when it is small. */
  #guard(req: IncomingMessage, res: ServerResponse, dialect: Dialect, body: Readable | null): void {
    const c = this.#opts.config;
    let sent: Readable | Buffer | null = null;
    let retried = false;
    let ownConnection = false;
    const exchange = new GuardedExchange(req, res, {
      dialect,
      firstEventTimeoutMs: c.firstEventTimeoutMs,
      maxHoldBytes: c.maxHoldBytes,
      retryAfterSeconds: c.retryAfterSeconds,
      progress: this.progress,
      onDone: (record) => {
        this.#inFlight.delete(exchange);
        this.#guardedInFlight--;
        this.#done(record);
        // Its connection is gone, and the next stream will want one: opened now, not when it comes.
        if (ownConnection) this.#spares?.prime();
      },
      onUpstreamLost: () => {
        // Supervised: a refused or dropped connection before any answer means the child has just died
        // and the supervisor may not have noticed yet. The client has seen nothing, so a body we still
        // hold goes again, once, when the restarted child is ready: a slow answer instead of a 502. (A
        // request that itself kills llama-server is thus tried twice, never more.)
        if (!this.#opts.gateTraffic || retried || sent instanceof Readable) return false;
        retried = true;
        void this.#afterRestart(exchange, () => dispatch(sent));
        return true;
      },
    });
    this.#inFlight.add(exchange);
    this.#guardedInFlight++;
    const dispatch = (payload: Readable | Buffer | null): boolean => {
      sent = payload;
      ownConnection = !(payload instanceof Buffer) || asksForStream(payload);
      return this.#pool.dispatch(
        {
          origin: this.#opts.upstream.origin,
          path: req.url ?? '/',
          method: 'POST',
          headers: upstreamRequestHeaders(req),
          body: payload,
          // llama-server closes the connection after every stream, a few ms after its last byte and without
          // saying so (no Connection: close). A pooled socket would carry the next request into that close
          // and the client would get a 502. So a request that may stream gets a connection of its own
          // (which the stream would have cost anyway); a known non-stream request reuses one.
          reset: ownConnection,
        },
        exchange,
      );
    };
    // A small body (the usual chat request) is read whole first, so undici sends head and body in one
    // write instead of piping a stream; the client has sent it with its headers anyway.
    if (body === req && Number(req.headers['content-length']) <= SMALL_BODY) {
      void readWhole(req).then((whole) => {
        if (whole !== undefined) dispatch(whole);
      });
      return;
    }
    dispatch(body);
  }

  /** Waits for the supervisor to see the death and the restart, then sends again, or answers 503. */
  async #afterRestart(exchange: GuardedExchange, resend: () => void): Promise<void> {
    const readiness = this.#opts.readiness;
    // The child's exit reaches the supervisor as a process event, soon but not at once on a busy machine.
    // If it never leaves "ready", the connection was lost some other way, and it is sent again as it is.
    const noticeBy = Date.now() + CHILD_EXIT_NOTICE_MS;
    while (readiness.isReady() && Date.now() < noticeBy) await new Promise((r) => setTimeout(r, 20));
    const ready = await readiness.waitReady(this.#opts.config.readyWaitMs);
    if (exchange.settled) return; // the client left meanwhile
    if (ready && !this.#draining) resend();
    else exchange.terminate(503, `llama-server is not ready (${readiness.state()}); retry later`, 'upstream_not_ready');
  }

  #passthroughRequest(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    const entry: InFlight = { terminate: () => res.destroy() };
    this.#inFlight.add(entry);
    res.on('close', () => {
      this.#inFlight.delete(entry);
      const aborted = !res.writableFinished;
      this.#done({
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        status: aborted ? 499 : res.statusCode,
        durationMs: Math.round(performance.now() - started),
        bytesOut: 0,
        ...(aborted ? { clientAbort: true } : {}),
      });
    });
    this.#passthrough(req, res);
  }

  #own(path: string, res: ServerResponse): void {
    const readiness = this.#opts.readiness;
    if (path === '/-/live') {
      sendJson(res, 200, { status: 'live' });
      return;
    }
    if (path === '/-/ready') {
      const ready = readiness.isReady() && !this.#draining;
      const state = this.#draining ? 'draining' : readiness.state();
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', upstream: state });
      return;
    }
    if (path === '/-/metrics') {
      void this.#scrape(res);
      return;
    }
    sendAnswer(res, ownError(404, 'openai', `no such endpoint: ${path}`, 'not_found'));
  }

  /**
   * Malformed requests (smuggling attempts such as Content-Length with Transfer-Encoding, oversized
   * headers, a client too slow to send them) never reach llama-server: Node's parser stops them, and
   * the client gets a status and a JSON error before the connection is closed.
   */
  #clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const message = status === 431 ? 'request headers too large' : status === 408 ? 'request not received in time' : 'malformed HTTP request';
    const body = ownError(status, 'openai', message, err.code ?? 'bad_request').body;
    this.#opts.log.warn({ status, code: err.code }, 'rejected a malformed request');
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }

  async #scrape(res: ServerResponse): Promise<void> {
    try {
      const text = await this.metrics.registry.metrics();
      res.writeHead(200, ['Content-Type', this.metrics.registry.contentType]);
      res.end(text);
    } catch (err) {
      this.#opts.log.error({ err }, 'metrics scrape failed');
      sendAnswer(res, ownError(500, 'openai', 'metrics are unavailable', 'metrics_failed'));
    }
  }

  #refuse(req: IncomingMessage, res: ServerResponse, answer: ReturnType<typeof ownError>, headers: string[] = []): void {
    const extra = answer.status === 503 ? [...headers, 'Retry-After', String(this.#opts.config.retryAfterSeconds)] : headers;
    const started = performance.now();
    sendAnswer(res, answer, extra);
    this.#done({
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      status: answer.status,
      errorType: answer.type,
      durationMs: Math.round(performance.now() - started),
      bytesOut: answer.body.length,
    });
  }

  #done(record: RequestRecord): void {
    this.#opts.log.info(record, 'request');
    this.metrics.observe(record);
  }
}

/**
 * Whether a JSON body sets `"stream": true`. A scan, not a parse: validation is llama-server's. Quotes in
 * message text are escaped (\"), so they cannot match. A wrong "yes" only costs a connection; a wrong
 * "no" would put a stream on a reused socket, and llama-server accepts nothing but `true` for it.
 */
function asksForStream(body: Buffer): boolean {
  return STREAM_TRUE.test(body.toString('latin1'));
}
const STREAM_TRUE = /"stream"\s*:\s*true/;

/**
 * How long a spare upstream connection waits to be taken: well inside the 5 s keep-alive timeout of
 * llama-server (cpp-httplib) and of the other servers people put behind it, so none closes a spare as
 * a request goes out on it.
 */
const SPARE_MAX_IDLE_MS = 2000;

/** Longest wait for the supervisor to learn of a child's exit (its process 'close' event). */
const CHILD_EXIT_NOTICE_MS = 1000;

/** Bodies up to this size are read into memory before they go upstream. */
const SMALL_BODY = 64 * 1024;

/** The whole body, or undefined when the client went away first (the exchange sees that on its own). */
function readWhole(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    req.on('data', (chunk: Buffer) => parts.push(chunk));
    req.once('end', () => resolve(Buffer.concat(parts)));
    req.once('error', () => resolve(undefined));
    req.once('close', () => resolve(undefined)); // no effect after 'end'
  });
}

/**
 * The request body as undici should send it, without reading it here. A declared length over the limit
 * is refused before a byte is read; a chunked body is counted on its way through.
 */
function requestBody(req: IncomingMessage, limit: number): Readable | null | BodyTooLargeError {
  const declared = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  if (declared === undefined && !chunked) return null;
  if (limit === 0) return req;
  if (declared !== undefined && !chunked) return Number(declared) > limit ? new BodyTooLargeError(limit) : req;
  return Readable.from(limited(req, limit), { objectMode: false });
}

async function* limited(source: AsyncIterable<Buffer>, limit: number): AsyncIterable<Buffer> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.length;
    if (total > limit) throw new BodyTooLargeError(limit);
    yield chunk;
  }
}
