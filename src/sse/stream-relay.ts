/**
 * The hot path: after the deciding event every upstream byte goes through here to the client. It does
 * not read events. It does two cheap things on the raw bytes:
 *  - a legacy `error:` field at the start of a line (llama-server b1542–b6522) is rewritten to a
 *    `data: {"error":…}` line, because every SSE client drops the unknown field and reports success;
 *  - it keeps a copy of the last bytes, so that at the end of the body the last event can be read once
 *    to tell a proper ending from a stream that just stopped.
 */
import { legacyErrorFrame } from '../error-response.js';
import { readAllEvents, type SseEvent } from './event-reader.js';
import { classifyEvent, isFinalEvent } from './classify.js';

export type StreamEnding = 'done' | 'error' | 'unfinished';

const UNREADABLE = Symbol('complete event larger than the window');

const ERROR_FIELD = Buffer.from('error:');
const LF = 0x0a;
const CR = 0x0d;
/** Bytes before the end where the search for the last event starts; llama-server's events are far shorter. */
const LOOK_BACK = 2048;
/**
 * The window the last event is read from. Its own bound, not the hold's (maxHoldBytes): with a hold of a
 * few bytes the final event would never fit, and every healthy stream would end with an error frame. A
 * complete last event larger than this (llama-server's /completion echoes the prompt) counts as an ending.
 */
const TAIL_BYTES = 64 * 1024;
/** First size of a stream's tail copy; it doubles as the stream grows, up to the window. */
const MIN_TAIL = 4096;
const NO_BYTES: Buffer = Buffer.alloc(0);
const BLANK_LINES = [Buffer.from('\n\n'), Buffer.from('\r\n\r\n'), Buffer.from('\r\r')];

export interface ByteSink {
  /** Returns false when the sink wants no more for now (backpressure). */
  write(chunk: Buffer): boolean;
}

export class StreamRelay {
  readonly #sink: ByteSink;
  readonly #tail: TailWindow;
  /** The next byte starts a line. */
  #atLineStart = true;
  /** Unsent bytes that start a line: a split `error:` prefix, or a legacy error line still missing its end. */
  #carry: Buffer | undefined;
  readonly #maxCarry: number;
  /** The last two bytes sent, to know whether a frame of ours would start a new event. */
  #prevByte = LF;
  #lastByte = LF;

  /**
   * @param opts.tailBytes how much of the end is kept to read the last event from (and the longest legacy
   *   error line held back); smaller only in tests.
   */
  constructor(sink: ByteSink, opts: { tailBytes: number } = { tailBytes: TAIL_BYTES }) {
    this.#sink = sink;
    this.#tail = new TailWindow(opts.tailBytes);
    this.#maxCarry = opts.tailBytes;
  }

  write(input: Buffer): boolean {
    if (input.length === 0) return true;
    this.#tail.push(input);
    let chunk = input;
    if (this.#carry !== undefined) {
      chunk = Buffer.concat([this.#carry, input]);
      this.#carry = undefined;
      this.#atLineStart = true;
    }
    let ok = true;
    let sent = 0;
    let pos = 0;
    for (;;) {
      const at = chunk.indexOf(ERROR_FIELD, pos);
      if (at === -1) break;
      if (!(at === 0 ? this.#atLineStart : isEol(chunk[at - 1]))) {
        pos = at + 1;
        continue;
      }
      const eol = indexOfEol(chunk, at + ERROR_FIELD.length);
      if (eol === -1) {
        ok = this.#send(chunk, sent, at) && ok;
        return this.#hold(chunk.subarray(at)) && ok;
      }
      ok = this.#send(chunk, sent, at) && ok;
      ok = this.#emit(legacyErrorFrame(fieldValue(chunk, at, eol))) && ok;
      sent = pos = eol;
    }
    const split = splitPrefixLength(chunk, sent, this.#atLineStart);
    ok = this.#send(chunk, sent, chunk.length - split) && ok;
    if (split > 0) return this.#hold(chunk.subarray(chunk.length - split)) && ok;
    this.#atLineStart = isEol(chunk[chunk.length - 1]);
    return ok;
  }

  /**
   * How the body ended: with a proper last event, with an error the client already got (the upstream's
   * own frame, or a legacy line we rewrote), or without an ending at all.
   */
  ending(): StreamEnding {
    const last = this.#tail.lastEvent();
    // A complete last event larger than the window: llama-server's big final events (the native prompt
    // echo, response.completed with the whole output) look like this; a cut-off stream almost never does.
    if (last === UNREADABLE) return 'done';
    if (last === undefined || !isFinalEvent(last)) return 'unfinished';
    return classifyEvent(last).kind === 'error' ? 'error' : 'done';
  }

  endedWell(): boolean {
    return this.ending() !== 'unfinished';
  }

  /**
   * The stream is over: its tail copy goes back for the next stream to use. A relay used after this starts a
   * new tail (it never writes into a copy it gave back).
   */
  release(): void {
    this.#tail.release();
  }

  /** Flushes what was held back at the very end (an unterminated legacy line is still rewritten). */
  flush(): void {
    const carry = this.#carry;
    if (carry === undefined) return;
    this.#carry = undefined;
    if (carry.subarray(0, ERROR_FIELD.length).equals(ERROR_FIELD)) this.#emit(legacyErrorFrame(fieldValue(carry, 0, carry.length)));
    else this.#emit(carry);
  }

  /** What to write before a frame of ours so that it starts a new event. */
  eventBoundaryPadding(): string {
    if (!isEol(this.#lastByte)) return '\n\n';
    if (this.#prevByte === this.#lastByte) return ''; // "\n\n" or "\r\r"
    return '\n'; // one line end ("x\n", or CRLF: "\r\n" + "\n" is a blank line)
  }

  #hold(bytes: Buffer): boolean {
    if (bytes.length > this.#maxCarry) {
      // A line this long is not an error frame worth saving; let it through as it is.
      this.#atLineStart = false;
      return this.#emit(bytes);
    }
    this.#carry = Buffer.from(bytes);
    return true;
  }

  #send(chunk: Buffer, from: number, to: number): boolean {
    if (to <= from) return true;
    return this.#emit(from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to));
  }

  #emit(bytes: Buffer): boolean {
    const n = bytes.length;
    this.#prevByte = n >= 2 ? (bytes[n - 2] ?? 0) : this.#lastByte;
    this.#lastByte = bytes[n - 1] ?? this.#lastByte;
    return this.#sink.write(bytes);
  }
}

function isEol(byte: number | undefined): boolean {
  return byte === LF || byte === CR;
}

function indexOfEol(chunk: Buffer, from: number): number {
  const lf = chunk.indexOf(LF, from);
  const cr = chunk.indexOf(CR, from);
  if (lf === -1) return cr;
  if (cr === -1) return lf;
  return Math.min(lf, cr);
}

function fieldValue(chunk: Buffer, at: number, eol: number): string {
  let start = at + ERROR_FIELD.length;
  if (chunk[start] === 0x20) start++;
  return chunk.toString('utf8', start, eol);
}

/**
 * How many bytes at the end of the chunk could be the start of an `error:` field cut by the chunk
 * boundary ("e", "er", … "error" at the start of a line). Those wait for the next chunk.
 */
function splitPrefixLength(chunk: Buffer, from: number, atLineStart: boolean): number {
  const last = chunk[chunk.length - 1];
  if (last !== 0x65 /* e */ && last !== 0x72 /* r */ && last !== 0x6f /* o */) return 0;
  for (let k = Math.min(ERROR_FIELD.length - 1, chunk.length - from); k >= 1; k--) {
    const start = chunk.length - k;
    const lineStart = start === 0 ? atLineStart : isEol(chunk[start - 1]);
    if (lineStart && chunk.compare(ERROR_FIELD, 0, k, start, chunk.length) === 0) return k;
  }
  return 0;
}

/**
 * A copy of the last `limit` bytes of the stream, in a ring that grows (×2) up to `limit` as the stream does.
 * A copy, not references to the chunks: a reference would keep every socket read of a stream (its Buffer and
 * backing store) alive until the stream ends, long enough to be promoted to V8's old generation, where the
 * dead ones pile up until a full GC: ~8 MiB of peak RSS through 64 concurrent streams. Copying ~300 bytes per
 * read costs next to nothing.
 */
class TailWindow {
  readonly #limit: number;
  #ring: Buffer = NO_BYTES;
  /** Index of the oldest byte kept. */
  #start = 0;
  /** Bytes kept, at most the ring's length. */
  #size = 0;
  #dropped = false;

  constructor(limit: number) {
    this.#limit = limit;
  }

  push(chunk: Buffer): void {
    const n = chunk.length;
    if (n >= this.#limit) {
      if (this.#ring.length < this.#limit) {
        giveRing(this.#ring);
        this.#ring = takeRing(this.#limit);
      }
      this.#ring.set(n === this.#limit ? chunk : chunk.subarray(n - this.#limit));
      this.#dropped ||= this.#size > 0 || n > this.#limit;
      this.#start = 0;
      this.#size = this.#limit;
      return;
    }
    if (this.#size + n > this.#ring.length && this.#ring.length < this.#limit) this.#grow(this.#size + n);
    const ring = this.#ring;
    const capacity = ring.length;
    let at = (this.#start + this.#size) % capacity;
    const first = capacity - at;
    if (n <= first) ring.set(chunk, at);
    else {
      ring.set(chunk.subarray(0, first), at);
      ring.set(chunk.subarray(first));
    }
    at = this.#size + n;
    if (at > capacity) {
      // The oldest bytes were overwritten.
      this.#start = (this.#start + at - capacity) % capacity;
      this.#size = capacity;
      this.#dropped = true;
    } else this.#size = at;
  }

  #grow(needed: number): void {
    const capacity = Math.min(this.#limit, Math.max(needed, 2 * this.#ring.length, MIN_TAIL));
    const ring = takeRing(capacity);
    ring.set(this.#contents());
    giveRing(this.#ring);
    this.#ring = ring;
    this.#start = 0;
  }

  release(): void {
    giveRing(this.#ring);
    this.#ring = NO_BYTES;
    this.#start = 0;
    this.#size = 0;
  }

  /** The bytes kept, oldest first. */
  #contents(): Buffer {
    const end = this.#start + this.#size;
    if (end <= this.#ring.length) return this.#ring.subarray(this.#start, end);
    return Buffer.concat([this.#ring.subarray(this.#start), this.#ring.subarray(0, end - this.#ring.length)]);
  }

  /**
   * The last event in the window; UNREADABLE when the window holds only the end of one complete event
   * (it started before the window); undefined when there is none.
   */
  lastEvent(): SseEvent | typeof UNREADABLE | undefined {
    const all = this.#contents();
    // Only the last event counts, so only the end is read: from the first blank line in the last
    // LOOK_BACK bytes, looking further back while no whole event follows it. Reading the whole window
    // was most of the relay's cost per stream; the last pass, over the whole window, is the old rule.
    for (let span = LOOK_BACK; ; span *= 4) {
      const whole = span >= all.length;
      let bytes = whole ? all : all.subarray(all.length - span);
      if (!whole || this.#dropped) {
        // The bytes start mid-stream: read from the first event boundary in them.
        const boundary = firstBoundary(bytes);
        if (whole && boundary === bytes.length) return UNREADABLE;
        if (whole && boundary === -1) return undefined; // not even the end of an event: cut off mid-event
        if (boundary === -1 || boundary === bytes.length) continue;
        bytes = bytes.subarray(boundary);
      }
      const events = readAllEvents(bytes);
      if (events.length > 0 || whole) return events[events.length - 1];
    }
  }
}

/**
 * Rings of finished streams, by size, for the next streams. A ring lives as long as its stream, so a new one
 * per stream would be promoted and then wait, dead, for a full GC with its bytes; reused, it is allocated once.
 * At most MAX_SPARE_BYTES wait here, so a burst of streams does not pin its rings for good.
 */
const spareRings = new Map<number, Buffer[]>();
let spareBytes = 0;
const MAX_SPARE_BYTES = 2 * 1024 * 1024;

function takeRing(capacity: number): Buffer {
  const ring = spareRings.get(capacity)?.pop();
  if (ring === undefined) return Buffer.allocUnsafeSlow(capacity);
  spareBytes -= capacity;
  return ring;
}

function giveRing(ring: Buffer): void {
  if (ring.length === 0 || spareBytes + ring.length > MAX_SPARE_BYTES) return;
  let spares = spareRings.get(ring.length);
  if (spares === undefined) spareRings.set(ring.length, (spares = []));
  spares.push(ring);
  spareBytes += ring.length;
}

function firstBoundary(bytes: Buffer): number {
  let best = -1;
  for (const blank of BLANK_LINES) {
    const at = bytes.indexOf(blank);
    if (at !== -1 && (best === -1 || at + blank.length < best)) best = at + blank.length;
  }
  return best;
}
