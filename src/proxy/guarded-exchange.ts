/**
 * The state machine of one guarded request: the whole life of a completion request, from the upstream's
 * headers to the last byte, lives in this class.
 *
 *   connecting ──► verbatim                       (not 200 + text/event-stream: relayed as it is)
 *        │
 *        └──────► holding ──► streaming ──► done  (deciding event was output, or a hold bound was hit)
 *                    │
 *                    └──────► done                (deciding event was an error: real status + JSON)
 *
 * The commit point is the 200 written by #commit(). Before it, every failure becomes a real status
 * through #answer(). After it, the only honest signal left is an error frame in the stream (or, for a
 * non-stream body cut short, a reset connection).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Dialect } from '../routes.js';
import type { RequestRecord } from '../log.js';
import { SseEventReader } from '../sse/event-reader.js';
import { firstDecision, type Verdict } from '../sse/classify.js';
import { StreamRelay } from '../sse/stream-relay.js';
import { answerForUpstreamError, errorFrame, ownError, type ErrorAnswer } from '../error-response.js';
import { AnsweredError, ClientGoneError, ProxyError, upstreamFailure } from '../errors.js';
import { addIfAbsent, endToEnd, getHeader, rawToStrings, type FlatHeaders } from './headers.js';

export interface ExchangeOptions {
  readonly dialect: Dialect;
  readonly firstEventTimeoutMs: number;
  readonly maxHoldBytes: number;
  readonly retryAfterSeconds: number;
  /** Called once, when the client's response is over. */
  readonly onDone: (record: RequestRecord) => void;
  /** Shared by all exchanges: upstream bytes received, so the supervisor can tell busy from hung. */
  readonly progress: { bytes: number };
  /**
   * The upstream refused or dropped the connection before answering anything; true when the caller will
   * send the request again itself.
   */
  readonly onUpstreamLost?: () => boolean;
}

type Phase = 'connecting' | 'verbatim' | 'holding' | 'streaming' | 'done';

/** Failures before the upstream said anything: the request can go again without anyone seeing two answers. */
const LOST_BEFORE_ANSWER = new Set(['upstream_unreachable', 'upstream_connection_lost']);

/** Header that marks an answer whose status the proxy took from an in-band error. */
export const REWRITTEN_HEADER = 'x-status-rewritten';

/** Headers of the SSE response that make no sense on a JSON error body. */
const NOT_FOR_ERROR_BODY = new Set(['content-type', 'content-length', 'content-encoding', 'cache-control', 'x-accel-buffering']);
/** A rewritten stream may change length (legacy error lines), so the upstream's length cannot be kept. */
const NOT_FOR_STREAM = new Set(['content-length']);

export class GuardedExchange implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse;
  readonly #opts: ExchangeOptions;
  readonly #record: RequestRecord;
  readonly #startedAt = performance.now();
  #phase: Phase = 'connecting';
  #controller: Dispatcher.DispatchController | undefined;
  #upstreamHeaders: FlatHeaders = [];
  #upstreamStatusMessage: string | undefined;
  #headersAt = 0;
  #held: Buffer[] = [];
  #heldBytes = 0;
  #reader: SseEventReader | undefined;
  #relay: StreamRelay | undefined;
  #holdTimer: NodeJS.Timeout | undefined;
  /** Streaming: chunks received in this tick, not yet relayed. */
  readonly #batch: Buffer[] = [];
  #logged = false;

  constructor(req: IncomingMessage, res: ServerResponse, opts: ExchangeOptions) {
    this.#res = res;
    this.#opts = opts;
    this.#record = { method: req.method ?? 'GET', path: req.url ?? '/', status: 0, durationMs: 0, bytesOut: 0 };
    res.on('close', () => {
      if (!res.writableFinished) this.#clientGone();
      this.#log();
    });
  }

  /** The client's response is decided (answered, streamed to the end, or abandoned). */
  get settled(): boolean {
    return this.#phase === 'done';
  }

  // ---- undici's hooks -------------------------------------------------------------------------------

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#phase === 'done') controller.abort(new ClientGoneError());
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    _headers: unknown,
    statusMessage?: string,
  ): void {
    this.#controller = controller;
    if (this.#phase !== 'connecting') return;
    this.#headersAt = performance.now();
    this.#record.upstreamStatus = statusCode;
    this.#upstreamStatusMessage = statusMessage || undefined;
    const raw = rawToStrings(controller.rawHeaders as ReadonlyArray<Buffer | string> | null);
    if (statusCode === 200 && isReadableEventStream(raw)) {
      this.#phase = 'holding';
      this.#upstreamHeaders = endToEnd(raw, NOT_FOR_STREAM);
      this.#reader = new SseEventReader();
      if (this.#opts.firstEventTimeoutMs > 0) {
        this.#holdTimer = setTimeout(() => this.#commit('timeout'), this.#opts.firstEventTimeoutMs);
      }
      return;
    }
    this.#phase = 'verbatim';
    this.#res.on('drain', () => controller.resume());
    this.#writeHead(statusCode, this.#upstreamStatusMessage, endToEnd(raw));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#opts.progress.bytes += chunk.length;
    switch (this.#phase) {
      case 'streaming':
        // hot path: no parsing. The chunks of one socket read arrive here one HTTP chunk at a time; they
        // leave as one write at the end of the tick, so Node frames and queues one chunk, not one per event.
        if (this.#batch.length === 0) process.nextTick(this.#flushBatch);
        this.#batch.push(chunk);
        return;
      case 'verbatim':
        if (!this.#write(chunk)) controller.pause();
        return;
      case 'holding':
        this.#hold(chunk);
        return;
      default:
        return;
    }
  }

  readonly #flushBatch = (): void => {
    const batch = this.#batch; // one array for the whole stream: emptied, never replaced
    if (batch.length === 0) return;
    if (this.#phase !== 'streaming') {
      batch.length = 0;
      return;
    }
    const chunk = batch.length === 1 ? (batch[0] as Buffer) : Buffer.concat(batch);
    batch.length = 0;
    if (!this.#relay?.write(chunk)) this.#controller?.pause();
  };

  onResponseEnd(): void {
    this.#flushBatch();
    switch (this.#phase) {
      case 'verbatim':
        this.#end();
        return;
      case 'holding': {
        const verdict = firstDecision((sink) => this.#reader?.end(sink));
        if (verdict !== undefined) {
          this.#decide(verdict);
          if ((this.#phase as Phase) === 'streaming') this.#endStream(); // output or [DONE] in the last bytes
        } else {
          const message = 'llama-server ended the stream without sending any output or error';
          this.#answer(ownError(502, this.#opts.dialect, message, 'empty_stream'));
        }
        return;
      }
      case 'streaming':
        this.#endStream();
        return;
      default:
        return;
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    this.#flushBatch();
    const failure = upstreamFailure(err);
    switch (this.#phase) {
      case 'connecting':
        if (LOST_BEFORE_ANSWER.has(failure.code) && this.#opts.onUpstreamLost?.()) {
          this.#record.retried = true;
          return;
        }
        this.#answer(ownError(failure.status, this.#opts.dialect, failure.message, failure.code));
        return;
      case 'holding':
        this.#answer(ownError(failure.status, this.#opts.dialect, failure.message, failure.code));
        return;
      case 'verbatim':
        // Headers are out and the body is cut short: a reset is the only signal a client cannot miss.
        this.#phase = 'done';
        this.#record.midStreamError = failure.code;
        this.#res.destroy();
        return;
      case 'streaming':
        if (this.#endedWell()) this.#end();
        else this.#streamError(failure.status, `the stream from llama-server broke off: ${failure.message}`, failure.code);
        return;
      default:
        return; // our own abort after answering, or the client's
    }
  }

  // ---- decisions ------------------------------------------------------------------------------------

  /**
   * End the exchange now, for shutdown: a held or unanswered request gets a status, a started stream an
   * error frame.
   */
  terminate(status: number, message: string, code: string): void {
    this.#flushBatch();
    switch (this.#phase) {
      case 'connecting':
      case 'holding':
        this.#answer(ownError(status, this.#opts.dialect, message, code));
        return;
      case 'streaming':
        this.#relay?.flush();
        this.#streamError(status, message, code);
        this.#abortUpstream(new AnsweredError());
        return;
      case 'verbatim':
        this.#phase = 'done';
        this.#res.destroy();
        this.#abortUpstream(new AnsweredError());
        return;
      default:
        return;
    }
  }

  #hold(chunk: Buffer): void {
    this.#held.push(chunk);
    this.#heldBytes += chunk.length;
    const verdict = firstDecision((sink) => this.#reader?.push(chunk, sink));
    if (verdict !== undefined) this.#decide(verdict);
    else if (this.#heldBytes >= this.#opts.maxHoldBytes) this.#commit('max-bytes');
  }

  #decide(verdict: Verdict): void {
    this.#record.decideMs = Math.round(performance.now() - this.#headersAt);
    if (verdict.kind === 'error') {
      this.#record.rewritten = true;
      this.#answer(answerForUpstreamError(verdict.payload, this.#opts.dialect), this.#upstreamHeaders);
    } else {
      this.#commit();
    }
  }

  /** The commit point: 200 and every held byte, then the relay takes over. */
  #commit(holdEnd?: 'timeout' | 'max-bytes'): void {
    if (this.#phase !== 'holding') return;
    clearTimeout(this.#holdTimer);
    if (holdEnd !== undefined) this.#record.holdEnd = holdEnd;
    this.#phase = 'streaming';
    this.#reader = undefined;
    const headers = this.#upstreamHeaders;
    // Buffering proxies in front of us (nginx) must not sit on the tokens.
    addIfAbsent(headers, 'X-Accel-Buffering', 'no');
    addIfAbsent(headers, 'Cache-Control', 'no-cache');
    this.#writeHead(200, this.#upstreamStatusMessage, headers);
    const res = this.#res;
    const relay = new StreamRelay({ write: (b) => this.#write(b) });
    this.#relay = relay;
    const controller = this.#controller;
    res.on('drain', () => controller?.resume());
    res.cork();
    let ok = true;
    for (const chunk of this.#held) ok = relay.write(chunk) && ok;
    res.uncork();
    // A hold that ended on its timer may have nothing to send yet; the client must still get its 200 now.
    if (this.#held.length === 0) res.flushHeaders();
    this.#held = [];
    if (!ok) controller?.pause();
  }

  #endStream(): void {
    if (this.#endedWell()) this.#end();
    else this.#streamError(502, 'llama-server stopped mid-stream without finishing the response', 'upstream_stream_ended');
  }

  /** Flushes the relay and reads how the upstream's stream ended; an in-band error there is counted. */
  #endedWell(): boolean {
    const relay = this.#relay;
    if (relay === undefined) return false;
    relay.flush();
    const ending = relay.ending();
    if (ending === 'error') this.#record.inBandAfterCommit = true;
    return ending !== 'unfinished';
  }

  /** After the commit: one error frame in the route's format, then the end. Never a silent stop. */
  #streamError(status: number, message: string, code: string): void {
    if (this.#phase === 'done') return;
    this.#record.midStreamError = code;
    const padding = this.#relay?.eventBoundaryPadding() ?? '';
    if (padding !== '') this.#write(Buffer.from(padding));
    this.#write(errorFrame(this.#opts.dialect, status, message, code));
    this.#end();
  }

  /** Before the commit: a real status and a JSON body; the upstream is no longer needed. */
  #answer(answer: ErrorAnswer, upstreamHeaders?: FlatHeaders): void {
    if (this.#phase === 'done') return;
    clearTimeout(this.#holdTimer);
    this.#phase = 'done';
    this.#held = [];
    this.#abortUpstream(new AnsweredError());
    this.#record.errorType = answer.type;
    if (this.#res.headersSent) {
      this.#res.destroy();
      return;
    }
    const headers = upstreamHeaders ? endToEnd(upstreamHeaders, NOT_FOR_ERROR_BODY) : [];
    const body = Buffer.from(answer.body);
    headers.push('Content-Type', 'application/json; charset=utf-8', 'Content-Length', String(body.length));
    if (upstreamHeaders) headers.push(REWRITTEN_HEADER, 'in-band-error');
    if (answer.status === 503) headers.push('Retry-After', String(this.#opts.retryAfterSeconds));
    this.#writeHead(answer.status, undefined, headers);
    this.#bytes(body.length);
    this.#res.end(body);
  }

  #clientGone(): void {
    if (this.#phase === 'done' && this.#res.writableEnded) return;
    clearTimeout(this.#holdTimer);
    this.#phase = 'done';
    this.#held = [];
    this.#record.clientAbort = true;
    this.#abortUpstream(new ClientGoneError());
  }

  #abortUpstream(reason: ProxyError): void {
    const controller = this.#controller;
    if (controller !== undefined && !controller.aborted) controller.abort(reason);
  }

  // ---- output ---------------------------------------------------------------------------------------

  #writeHead(status: number, statusMessage: string | undefined, headers: FlatHeaders): void {
    this.#record.status = status;
    if (statusMessage !== undefined) this.#res.writeHead(status, statusMessage, headers);
    else this.#res.writeHead(status, headers);
  }

  #write(bytes: Buffer): boolean {
    this.#bytes(bytes.length);
    return this.#res.write(bytes);
  }

  #bytes(n: number): void {
    this.#record.bytesOut += n;
  }

  #end(): void {
    this.#phase = 'done';
    this.#res.end();
  }

  #log(): void {
    if (this.#logged) return;
    this.#logged = true;
    clearTimeout(this.#holdTimer);
    this.#relay?.release(); // the response is over: nothing reads the stream's tail any more
    const record = this.#record;
    if (record.clientAbort) record.status = 499;
    record.durationMs = Math.round(performance.now() - this.#startedAt);
    this.#opts.onDone(record);
  }
}

/** Only identity-encoded event streams can be read; a compressed one is relayed as it is. */
function isReadableEventStream(raw: ReadonlyArray<string>): boolean {
  const type = getHeader(raw, 'content-type')?.split(';')[0]?.trim().toLowerCase();
  const encoding = getHeader(raw, 'content-encoding')?.trim().toLowerCase();
  return type === 'text/event-stream' && (encoding === undefined || encoding === '' || encoding === 'identity');
}

