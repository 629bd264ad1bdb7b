/**
 * The HTTP server: routes each request to the proxy's own endpoints, the guard or the pass-through,
 * gates API traffic on readiness, and drains on shutdown.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { Config } from '../config.js';
import type { Logger, RequestRecord } from '../log.js';
import { dialectOf, guardedDialect, OWN_PREFIX, pathOf } from '../routes.js';
import { ownError } from '../error-response.js';
import { BodyTooLargeError } from '../errors.js';
import { GuardedExchange } from './guarded-exchange.js';
import { createPassthrough, type Passthrough } from './passthrough.js';
import { upstreamRequestHeaders } from './headers.js';
import { sendAnswer, sendJson } from './answer.js';
import type { Readiness } from './readiness.js';

export interface ProxyServerOptions {
  readonly config: Config;
  readonly upstream: URL;
  readonly log: Logger;
  readonly readiness: Readiness;
  /** Hold API requests while the upstream is not ready (supervised mode); sidecar mode only reports it. */
  readonly gateTraffic: boolean;
  /** Extra own endpoints, e.g. metrics: path below /-/ → handler. */
  readonly ownRoutes?: ReadonlyMap<string, (req: IncomingMessage, res: ServerResponse) => void>;
  readonly onRequestDone?: (record: RequestRecord) => void;
}

interface InFlight {
  terminate(status: number, message: string, code: string): void;
}

export class ProxyServer {
  readonly #opts: ProxyServerOptions;
  readonly #server: Server;
  readonly #pool: Pool;
  readonly #passthrough: Passthrough;
  readonly #inFlight = new Set<InFlight>();
  #draining = false;
  /** Upstream bytes received by guarded exchanges; see ExchangeOptions.progress. */
  readonly progress = { bytes: 0 };

  constructor(opts: ProxyServerOptions) {
    this.#opts = opts;
    const c = opts.config;
    this.#pool = new Pool(opts.upstream.origin, {
      connect: { timeout: c.upstreamConnectTimeoutMs },
      headersTimeout: c.upstreamHeadersTimeoutMs,
      bodyTimeout: c.upstreamBodyTimeoutMs,
      keepAliveTimeout: 4000, // below llama-server's own 5 s keep-alive, so we never reuse a socket it is closing
    });
    this.#passthrough = createPassthrough(opts.upstream, { headersTimeoutMs: c.upstreamHeadersTimeoutMs });
    this.#server = createServer(
      {
        headersTimeout: 60_000,
        requestTimeout: 300_000,
        keepAliveTimeout: 65_000, // longer than the usual 60 s idle of load balancers in front
        noDelay: true,
      },
      (req, res) => this.#route(req, res),
    );
    // SSE streams may be quiet between pings for a long time; the upstream timeouts bound silence instead.
    this.#server.timeout = 0;
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
   * Stop taking requests, give the ones in flight `drainTimeoutMs` to finish, then end the rest with an
   * error the client can see, and close every connection.
   */
  async drain(): Promise<void> {
    this.#draining = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    const deadline = Date.now() + this.#opts.config.drainTimeoutMs;
    while (this.#inFlight.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      this.#server.closeIdleConnections();
    }
    for (const exchange of this.#inFlight) {
      exchange.terminate(503, 'llama-status-proxy is shutting down', 'shutting_down');
    }
    this.#server.closeAllConnections();
    await closed;
    this.#passthrough.close();
    await this.#pool.close().catch(() => undefined);
  }

  #route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const path = pathOf(url);
    if (path.startsWith(OWN_PREFIX)) {
      this.#own(path, req, res);
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
    if (dialect === undefined) {
      this.#passthroughRequest(req, res);
      return;
    }
    const exchange = new GuardedExchange(req, res, {
      dialect,
      firstEventTimeoutMs: c.firstEventTimeoutMs,
      maxHoldBytes: c.maxHoldBytes,
      retryAfterSeconds: c.retryAfterSeconds,
      progress: this.progress,
      onDone: (record) => {
        this.#inFlight.delete(exchange);
        this.#done(record);
      },
    });
    this.#inFlight.add(exchange);
    this.#pool.dispatch(
      {
        origin: this.#opts.upstream.origin,
        path: req.url ?? '/',
        method: 'POST',
        headers: upstreamRequestHeaders(req),
        body,
      },
      exchange,
    );
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

  #own(path: string, req: IncomingMessage, res: ServerResponse): void {
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
    const handler = this.#opts.ownRoutes?.get(path);
    if (handler !== undefined) {
      handler(req, res);
      return;
    }
    sendAnswer(res, ownError(404, 'openai', `no such endpoint: ${path}`, 'not_found'));
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
    this.#opts.onRequestDone?.(record);
  }
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
