/**
 * An incremental Server-Sent Events reader, by the WHATWG rules: LF, CRLF and CR line ends, a leading
 * BOM, comment lines, fields without a colon, multi-line data, any chunk boundaries. Bytes in, events
 * out; no sockets, so it can be driven byte by byte in tests.
 *
 * It is used only while a response is held (and once more on the tail at the end of a stream): after the
 * deciding event the proxy relays bytes without reading events at all.
 */

export interface SseEvent {
  /** The `event:` field; '' when the event named none. */
  readonly event: string;
  /** The `data:` lines joined by LF; undefined when the event had no data line. */
  readonly data: string | undefined;
  /**
   * llama-server b1542–b6522 sent errors as a non-standard `error: {...}` field, which every SSE client
   * ignores (llama.cpp #14566). The reader keeps it so the proxy can act on it.
   */
  readonly legacyError: string | undefined;
}

const LF = 0x0a;
const CR = 0x0d;

/** Called per event; return true to stop reading (the rest of the chunk is not looked at). */
export type EventSink = (event: SseEvent) => boolean | void;

export class SseEventReader {
  /** Pieces of the line that has not ended yet. */
  #partial: Buffer[] = [];
  /** The previous chunk ended in CR: a LF at the start of the next one belongs to that line end. */
  #afterCr = false;
  #firstLine = true;
  #event = '';
  #data: string[] | undefined;
  #legacyError: string[] | undefined;
  #stopped = false;

  /** Feeds bytes; returns true once a sink asked to stop. */
  push(chunk: Uint8Array, sink: EventSink): boolean {
    if (this.#stopped) return true;
    let start = 0;
    if (this.#afterCr && chunk.length > 0) {
      this.#afterCr = false;
      if (chunk[0] === LF) start = 1;
    }
    for (let i = start; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte !== LF && byte !== CR) continue;
      if (this.#line(this.#takeLine(chunk, start, i), sink)) {
        this.#stopped = true;
        return true;
      }
      if (byte === CR) {
        if (i + 1 === chunk.length) this.#afterCr = true;
        else if (chunk[i + 1] === LF) i++;
      }
      start = i + 1;
    }
    if (start < chunk.length) this.#partial.push(Buffer.from(chunk.subarray(start)));
    return false;
  }

  /**
   * The stream ended. An unterminated last line still counts, and a pending event is dispatched: the
   * spec would drop it, but the proxy only asks "what was the last thing the upstream said", and a
   * `data: [DONE]` without its blank line still means done.
   */
  end(sink: EventSink): void {
    if (this.#stopped) return;
    if (this.#partial.length > 0 && this.#line(this.#takeLine(new Uint8Array(0), 0, 0), sink)) return;
    this.#dispatch(sink);
  }

  #takeLine(chunk: Uint8Array, from: number, to: number): string {
    let bytes: Uint8Array = chunk.subarray(from, to);
    if (this.#partial.length > 0) {
      this.#partial.push(Buffer.from(bytes));
      bytes = Buffer.concat(this.#partial);
      this.#partial = [];
    }
    let line = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
    if (this.#firstLine) {
      this.#firstLine = false;
      if (line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    }
    return line;
  }

  #line(line: string, sink: EventSink): boolean {
    if (line === '') return this.#dispatch(sink);
    if (line.charCodeAt(0) === 0x3a /* : */) return false; // comment, e.g. llama-server's `:` ping
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    switch (name) {
      case 'data':
        (this.#data ??= []).push(value);
        break;
      case 'event':
        this.#event = value;
        break;
      case 'error':
        (this.#legacyError ??= []).push(value);
        break;
      default: // id, retry and unknown fields do not affect the outcome
    }
    return false;
  }

  #dispatch(sink: EventSink): boolean {
    if (this.#event === '' && this.#data === undefined && this.#legacyError === undefined) return false;
    const event: SseEvent = {
      event: this.#event,
      data: this.#data?.join('\n'),
      legacyError: this.#legacyError?.join('\n'),
    };
    this.#event = '';
    this.#data = undefined;
    this.#legacyError = undefined;
    return sink(event) === true;
  }
}

/** All events of a complete byte string (tests and the end-of-stream check use it). */
export function readAllEvents(bytes: Uint8Array): SseEvent[] {
  const events: SseEvent[] = [];
  const reader = new SseEventReader();
  reader.push(bytes, (e) => {
    events.push(e);
  });
  reader.end((e) => {
    events.push(e);
  });
  return events;
}
