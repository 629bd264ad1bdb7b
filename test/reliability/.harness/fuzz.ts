// Fuzzing the SSE reader and the post-commit relay with random bytes and SSE-ish token soup, each input
// fed whole, in random pieces and (when short) byte by byte. Properties: no exception; the reader gives
// the same events however the bytes are cut, and the same as a plain string-splitting model; the relay
// writes the same bytes and reaches the same endedWell() however they are cut, and matches a model that
// rewrites whole lines.
import { SseEventReader, readAllEvents, type SseEvent } from '../../../src/sse/event-reader.js';
import { StreamRelay } from '../../../src/sse/stream-relay.js';
import { isFinalEvent } from '../../../src/sse/classify.js';
import { legacyErrorFrame } from '../../../src/error-response.js';
import { memoryAfterGc, prng, type MemorySample } from './probes.js';

type Rnd = ReturnType<typeof prng>;

const TOKENS: readonly Buffer[] = [
  'data:', 'data: ', 'data', 'event:', 'event: error', 'event: message_stop', 'error:', 'error: ', 'id: 7', 'retry: 10', ':', ': ping',
  '\n', '\n', '\n', '\r', '\r\n', '\n\n', '\r\n\r\n', '\r\r',
  '[DONE]', 'null', '{}', '"', '{', '}', 'x', ' ', 'e', 'er', 'err', 'erro', 'error', 'message_stop',
  '{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}',
  '{"choices":[{"delta":{},"finish_reason":"stop"}]}',
  '{"choices":[],"usage":{"total_tokens":3}}',
  '{"error":{"code":500,"message":"m","type":"server_error"}}',
  '{"code":400,"message":"bare","type":"invalid_request_error"}',
  '{"content":"e","stop":false}', '{"content":"","stop":true}', '{"type":"message_stop"}', '{"type":"response.completed"}',
  '\uFEFF', 'é', '€', '😀',
].map((s) => Buffer.from(s, 'utf8'));
// bytes that are not UTF-8 on their own: cut sequences, a lone continuation byte, a forbidden byte
const RAW_TOKENS: readonly Buffer[] = [Buffer.from([0xf0, 0x9f]), Buffer.from([0xc3]), Buffer.from([0x80]), Buffer.from([0xff]), Buffer.from([0xef, 0xbb])];
const SPECIAL = Buffer.from('\n\r: erodat', 'latin1');

function randomBytes(rnd: Rnd, max: number): Buffer {
  const out = Buffer.alloc(rnd.int(max + 1));
  for (let i = 0; i < out.length; i++) out[i] = rnd.int(3) === 0 ? (SPECIAL[rnd.int(SPECIAL.length)] ?? 0) : rnd.int(256);
  return out;
}

function tokenSoup(rnd: Rnd, maxTokens: number): Buffer {
  const parts: Buffer[] = [];
  const n = rnd.int(maxTokens + 1);
  for (let i = 0; i < n; i++) parts.push(rnd.int(12) === 0 ? rnd.pick(RAW_TOKENS) : rnd.pick(TOKENS));
  return Buffer.concat(parts);
}

/** Random pieces of 0 to 8 bytes (empty pieces included: a read can return nothing). */
function cutRandomly(rnd: Rnd, bytes: Buffer): Buffer[] {
  const pieces: Buffer[] = [];
  let pos = 0;
  for (let i = 0; pos < bytes.length && i < bytes.length * 2; i++) {
    const size = rnd.int(9);
    pieces.push(bytes.subarray(pos, pos + size));
    pos += size;
  }
  if (pos < bytes.length) pieces.push(bytes.subarray(pos));
  return pieces;
}

function bytewise(bytes: Buffer): Buffer[] {
  return Array.from(bytes, (b) => Buffer.from([b]));
}

// ---- the reader -------------------------------------------------------------------------------------

function readInPieces(pieces: readonly Buffer[], stopAfter = Infinity): SseEvent[] {
  const reader = new SseEventReader();
  const events: SseEvent[] = [];
  const sink = (e: SseEvent): boolean => {
    events.push(e);
    return events.length >= stopAfter;
  };
  for (const p of pieces) if (reader.push(p, sink)) return events;
  reader.end(sink);
  return events;
}

/**
 * The reader's rules applied to the whole input as one string: decode, drop a leading BOM, split on
 * CRLF|CR|LF, interpret line by line, and at the end count an unterminated last line and dispatch.
 */
export function modelEvents(bytes: Buffer): SseEvent[] {
  let text = bytes.toString('utf8');
  if (text.startsWith('\uFEFF')) text = text.slice(1);
  const lines = text.split(/\r\n|\r|\n/);
  if (lines[lines.length - 1] === '') lines.pop(); // what follows the last line end is not a line
  const events: SseEvent[] = [];
  let event = '';
  let data: string[] | undefined;
  let legacy: string[] | undefined;
  const dispatch = (): void => {
    if (event === '' && data === undefined && legacy === undefined) return;
    events.push({ event, data: data?.join('\n'), legacyError: legacy?.join('\n') });
    event = '';
    data = undefined;
    legacy = undefined;
  };
  for (const line of lines) {
    if (line === '') {
      dispatch();
      continue;
    }
    if (line.startsWith(':')) continue;
    const m = /^([^:]*)(?::(.*))?$/s.exec(line);
    const name = m?.[1] ?? line;
    const value = (m?.[2] ?? '').replace(/^ /, '');
    if (name === 'data') (data ??= []).push(value);
    else if (name === 'event') event = value;
    else if (name === 'error') (legacy ??= []).push(value);
  }
  dispatch();
  return events;
}

// ---- the relay --------------------------------------------------------------------------------------

function relayInPieces(pieces: readonly Buffer[], tailBytes: number, rnd: Rnd): { out: Buffer; endedWell: boolean } {
  const out: Buffer[] = [];
  // the sink's answer (backpressure) must not change what is written
  const relay = new StreamRelay({ write: (b) => (out.push(b), rnd.int(4) !== 0) }, { tailBytes });
  for (const p of pieces) relay.write(p);
  relay.flush();
  return { out: Buffer.concat(out), endedWell: relay.endedWell() };
}

/** Every line that starts with `error:` (after CR, LF or at the start) replaced by its data frame. */
export function modelRelay(bytes: Buffer): Buffer {
  const out: Buffer[] = [];
  let i = 0;
  for (let guard = 0; guard <= bytes.length && i <= bytes.length; guard++) {
    let eol = -1;
    for (let k = i; k < bytes.length; k++) {
      if (bytes[k] === 0x0a || bytes[k] === 0x0d) {
        eol = k;
        break;
      }
    }
    const end = eol === -1 ? bytes.length : eol;
    const line = bytes.subarray(i, end);
    if (line.subarray(0, 6).toString('latin1') === 'error:') {
      const value = line.subarray(line[6] === 0x20 ? 7 : 6).toString('utf8');
      out.push(legacyErrorFrame(value));
    } else out.push(line);
    if (eol === -1) break;
    out.push(bytes.subarray(eol, eol + 1));
    i = eol + 1;
  }
  return Buffer.concat(out);
}

export function modelEndedWell(bytes: Buffer): boolean {
  const events = readAllEvents(bytes);
  const last = events[events.length - 1];
  return last !== undefined && isFinalEvent(last);
}

// ---- runs -------------------------------------------------------------------------------------------

export interface FuzzResult {
  inputs: number;
  bytes: number;
  /** Feedings (whole, random pieces, byte by byte) compared, reader and relay together. */
  feedings: number;
  events: number;
  /** The first few counterexamples, described with the input in hex. */
  failures: string[];
  failureCount: number;
  exceptions: number;
  ms: number;
}

const eventsKey = (events: readonly SseEvent[]): string => JSON.stringify(events);

export function fuzzInputs(opts: { inputs: number; seed: number; tailBytes?: number }): FuzzResult {
  const started = performance.now();
  const rnd = prng(opts.seed);
  const tailBytes = opts.tailBytes ?? 65536;
  const failures: string[] = [];
  let failureCount = 0;
  let exceptions = 0;
  let bytes = 0;
  let feedings = 0;
  let events = 0;
  const fail = (what: string, input: Buffer, detail: string): void => {
    failureCount++;
    if (failures.length < 5) failures.push(`${what}: input ${input.toString('hex')} (${JSON.stringify(input.toString('latin1'))}): ${detail}`);
  };
  for (let n = 0; n < opts.inputs; n++) {
    const input = n % 2 === 0 ? tokenSoup(rnd, 8) : randomBytes(rnd, 32);
    bytes += input.length;
    // byte by byte is the harshest cut but the slowest: every eighth short input
    const ways = [[input], cutRandomly(rnd, input), ...(n % 8 === 1 && input.length <= 48 ? [bytewise(input)] : [])];
    try {
      const modelled = modelEvents(input);
      const model = eventsKey(modelled);
      events += modelled.length;
      for (const pieces of ways) {
        feedings++;
        const got = eventsKey(readInPieces(pieces));
        if (got !== model) fail('reader events differ from the model', input, `${pieces.length} pieces: ${got} vs ${model}`);
      }
      // stopping at the k-th event gives exactly the first k, however the bytes are cut
      const all = n % 4 === 0 ? readAllEvents(input) : [];
      if (all.length > 0) {
        const k = 1 + rnd.int(all.length);
        const want = eventsKey(all.slice(0, k));
        const got = eventsKey(readInPieces(ways[1] ?? [input], k));
        if (got !== want) fail(`reader stopped after ${k} events`, input, `${got} vs ${want}`);
      }
      const relayModel = modelRelay(input);
      const endedModel = modelEndedWell(input);
      for (const pieces of ways) {
        const got = relayInPieces(pieces, tailBytes, rnd);
        if (!got.out.equals(relayModel)) fail('relay output differs from the model', input, `${pieces.length} pieces: ${JSON.stringify(got.out.toString('latin1'))}`);
        if (got.endedWell !== endedModel) fail('relay endedWell differs from the model', input, `${pieces.length} pieces: ${got.endedWell} vs ${endedModel}`);
      }
    } catch (err) {
      exceptions++;
      fail('exception', input, (err as Error).stack ?? String(err));
    }
  }
  return { inputs: opts.inputs, bytes, feedings, events, failures, failureCount, exceptions, ms: Math.round(performance.now() - started) };
}

export interface StreamFuzzResult {
  bytes: number;
  events: number;
  endedWell: { whenDone: boolean; whenCut: boolean };
  /** Heap after a full collection with the reader and relay alive: after a quarter of the stream, at its end. */
  memory: { quarter: MemorySample; end: MemorySample };
  ms: number;
}

/**
 * One long stream of token soup through one reader and one relay, in random pieces up to 4 KiB: memory
 * must not grow with the length. Ends once with [DONE] (ended well) and once with a token (cut short).
 */
export function fuzzLongStream(opts: { bytes: number; seed: number }): StreamFuzzResult {
  const started = performance.now();
  let events = 0;
  const endedWell: Record<'done' | 'cut', boolean> = { done: false, cut: true };
  let quarter: MemorySample | undefined;
  let end: MemorySample | undefined;
  for (const ending of ['done', 'cut'] as const) {
    const rnd = prng(opts.seed);
    const reader = new SseEventReader();
    const relay = new StreamRelay({ write: () => true }, { tailBytes: 65536 });
    for (let fed = 0, i = 0; fed < opts.bytes && i < opts.bytes; i++) {
      const soup = tokenSoup(rnd, 200);
      for (let pos = 0; pos < soup.length; ) {
        const size = 1 + rnd.int(4096);
        const piece = soup.subarray(pos, pos + size);
        reader.push(piece, () => void events++);
        relay.write(piece);
        pos += size;
      }
      // measured while both are alive: what they keep is what a long stream costs
      if (ending === 'done' && quarter === undefined && fed + soup.length >= opts.bytes / 4) quarter = memoryAfterGc();
      fed += soup.length;
    }
    if (ending === 'done') end = memoryAfterGc();
    const last = Buffer.from(ending === 'done' ? '\n\ndata: [DONE]\n\n' : '\n\ndata: {"choices":[{"delta":{"content":"x"},"finish_reason":null}]}\n\n');
    relay.write(last);
    relay.flush();
    endedWell[ending] = relay.endedWell();
  }
  const none = { rss: 0, heapUsed: 0, arrayBuffers: 0 };
  return {
    bytes: opts.bytes,
    events,
    endedWell: { whenDone: endedWell.done, whenCut: endedWell.cut },
    memory: { quarter: quarter ?? none, end: end ?? none },
    ms: Math.round(performance.now() - started),
  };
}

/**
 * A healthy stream whose final event is longer than the relay's tail window, cut at random: it ended
 * well, whatever the cut. Returns the cuttings for which the relay said otherwise.
 */
export function longFinalEventCuts(opts: { tailBytes: number; trials: number; seed: number }): { trials: number; misjudged: number; example?: string } {
  const rnd = prng(opts.seed);
  const head = Buffer.from('data: {"index":0,"content":"Hi","stop":false}\n\n');
  let misjudged = 0;
  let example: string | undefined;
  for (let i = 0; i < opts.trials; i++) {
    const prompt = 'p'.repeat(opts.tailBytes + rnd.int(opts.tailBytes * 2));
    const final = Buffer.from(`data: {"content":"","stop":true,"prompt":"${prompt}"}\n\n`);
    const input = Buffer.concat([head, final]);
    const pieces = i === 0 ? [head, final] : cutRandomly(rnd, input);
    const got = relayInPieces(pieces, opts.tailBytes, rnd);
    if (!got.endedWell) {
      misjudged++;
      example ??= `final event of ${final.length} bytes, tail window ${opts.tailBytes}, ${pieces.length} pieces`;
    }
  }
  return { trials: opts.trials, misjudged, ...(example !== undefined ? { example } : {}) };
}
