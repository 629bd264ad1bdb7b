/**
 * The fake llama-server of the benchmark: its own process, raw node:net, every frame serialised once, so
 * that per event it costs one socket write and nothing else. The framing is b11669's: the head is one write,
 * the role event and the first token share the first HTTP chunk (REPORT.md §4; in raw/A_ok_chat_stream.txt
 * chunk `1f0` holds both), and from then on each event is its own write and its own HTTP chunk. The shape of
 * a stream is asked for in the query (shape.ts).
 *
 * Like llama-server, it closes the connection a moment after each stream (see CLOSE_AFTER_STREAM_MS) and
 * keeps it open after a non-stream answer.
 *
 * Paced streams share one timer per pace: llama-server decodes all slots in one batch, so the tokens of
 * concurrent streams leave at the same moments; one timer also keeps this process cheap at 256 streams.
 */
import net from 'node:net';
import { listenAndReport } from './report-port.js';
import { contentEvent, DONE_EVENT, FINISH_EVENT, JSON_ANSWER, parseShape, ROLE_EVENT, type StreamShape } from './shape.js';

const SSE_HEAD = Buffer.from(
  'HTTP/1.1 200 OK\r\nServer: llama.cpp\r\nAccess-Control-Allow-Origin: \r\nX-Accel-Buffering: no\r\n' +
    'Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5, max=100\r\n\r\n',
);
const jsonBody = Buffer.from(JSON_ANSWER);
const JSON_RESPONSE = Buffer.concat([
  Buffer.from(
    'HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${jsonBody.length}\r\nKeep-Alive: timeout=5, max=100\r\nServer: llama.cpp\r\nAccess-Control-Allow-Origin: \r\n\r\n`,
  ),
  jsonBody,
]);
const HEALTH_BODY = '{"status":"ok"}';
const HEALTH_RESPONSE = Buffer.from(
  `HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${HEALTH_BODY.length}\r\n\r\n${HEALTH_BODY}`,
);
const TERMINATOR = Buffer.from('0\r\n\r\n');
/**
 * llama-server b11669 sends FIN about 2 ms after a stream's `0\r\n\r\n` (measured on a loopback socket,
 * with or without a next request waiting) and never answers a request that arrives in between.
 */
const CLOSE_AFTER_STREAM_MS = 2;

function frame(text: string): Buffer {
  const body = Buffer.from(text);
  return Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n')]);
}

const FINISH = frame(FINISH_EVENT);
const DONE = frame(DONE_EVENT);
const contentFrames = new Map<number, { first: Buffer; next: Buffer }>();

/** The frames of a content size: the first chunk (role event and first token) and every later token's. */
function contentFramesOf(size: number): { first: Buffer; next: Buffer } {
  let f = contentFrames.get(size);
  if (f === undefined) {
    const token = contentEvent(size);
    f = { first: frame(ROLE_EVENT + token), next: frame(token) };
    contentFrames.set(size, f);
  }
  return f;
}

/** One response in progress: `next` counts the events written so far. */
class Stream {
  next = 0;
  readonly total: number;
  readonly frames: { first: Buffer; next: Buffer };
  closed = false;

  constructor(
    readonly conn: Connection,
    readonly shape: StreamShape,
  ) {
    this.total = shape.events;
    this.frames = contentFramesOf(shape.size);
  }

  /** Writes the next chunk; returns the socket's verdict (false: it wants a drain first). */
  writeNext(): boolean {
    const i = this.next;
    const sock = this.conn.socket;
    if (i === 0) {
      this.next = 2; // the role event and the first token
      return sock.write(this.frames.first);
    }
    this.next++;
    if (i < this.total - 2) return sock.write(this.frames.next);
    if (i === this.total - 2) return sock.write(FINISH);
    sock.write(DONE);
    // The end of the body is its own write too, as llama-server's chunked encoder does it.
    const ok = sock.write(TERMINATOR);
    this.conn.responseDone(this.shape.keepAlive === true);
    return ok;
  }

  get finished(): boolean {
    return this.next >= this.total;
  }
}

const pacers = new Map<number, { timer: NodeJS.Timeout; streams: Set<Stream> }>();

function pace(stream: Stream): void {
  const ms = stream.shape.paceMs;
  let pacer = pacers.get(ms);
  if (pacer === undefined) {
    const streams = new Set<Stream>();
    const timer = setInterval(() => {
      for (const s of streams) {
        if (s.closed) streams.delete(s);
        else {
          s.writeNext();
          if (s.finished) streams.delete(s);
        }
      }
      if (streams.size === 0) {
        clearInterval(timer);
        pacers.delete(ms);
      }
    }, ms);
    pacer = { timer, streams };
    pacers.set(ms, pacer);
  }
  pacer.streams.add(stream);
}

/** Unpaced: as fast as the socket takes it, one write per event, waiting for drain when it is full. */
function pump(stream: Stream): void {
  const sock = stream.conn.socket;
  while (!stream.finished && !stream.closed) {
    if (!stream.writeNext()) {
      if (!stream.finished) sock.once('drain', () => pump(stream));
      return;
    }
  }
}

class Connection {
  #buf: Buffer = Buffer.alloc(0);
  #busy = false;
  #stream: Stream | undefined;

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#parse();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.#stream) this.#stream.closed = true;
    });
  }

  responseDone(keepAlive: boolean): void {
    this.#stream = undefined;
    if (!keepAlive) {
      // #busy stays set: whatever arrives before the close is never read, as with llama-server.
      setTimeout(() => this.socket.end(), CLOSE_AFTER_STREAM_MS);
      return;
    }
    this.#busy = false;
    // A request that arrived while this response was going out is answered now.
    if (this.#buf.length > 0) queueMicrotask(() => this.#parse());
  }

  #parse(): void {
    if (this.#busy) return;
    const end = this.#buf.indexOf('\r\n\r\n');
    if (end === -1) return;
    const head = this.#buf.toString('latin1', 0, end);
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    const bodyLength = m ? Number(m[1]) : 0;
    if (this.#buf.length < end + 4 + bodyLength) return;
    this.#buf = this.#buf.subarray(end + 4 + bodyLength);
    const [method = 'GET', target = '/'] = head.slice(0, head.indexOf('\r\n')).split(' ');
    const url = new URL(target, 'http://upstream');
    if (method === 'GET') {
      this.socket.write(HEALTH_RESPONSE);
      if (this.#buf.length > 0) this.#parse();
      return;
    }
    if (url.searchParams.has('json')) {
      this.socket.write(JSON_RESPONSE);
      if (this.#buf.length > 0) this.#parse();
      return;
    }
    this.#busy = true;
    const stream = new Stream(this, parseShape(url.searchParams));
    this.#stream = stream;
    // The head, then the first chunk at once; pacing applies from the second token on.
    this.socket.write(SSE_HEAD);
    stream.writeNext();
    if (stream.shape.paceMs > 0) pace(stream);
    else pump(stream);
  }
}

const server = net.createServer({ noDelay: true }, (socket) => new Connection(socket));
listenAndReport(server, process.env.BENCH_UPSTREAM_PORT);
