// Upstream responses built byte by byte for the fault plans: heads, chunk framing and the SSE events of
// a b11669 chat stream. Kept here rather than in the catalogue because these are deliberately broken.
import { gzipSync } from 'node:zlib';

export function head(status: number, reason: string, headers: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.from([`HTTP/1.1 ${status} ${reason}`, ...headers.map(([k, v]) => `${k}: ${v}`)].join('\r\n') + '\r\n\r\n', 'latin1');
}

/** One chunk of the chunked transfer coding. */
export function chunk(payload: string | Buffer): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  return Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]);
}

export const LAST_CHUNK = Buffer.from('0\r\n\r\n');

export const SSE_HEAD = head(200, 'OK', [
  ['Server', 'llama.cpp'],
  ['Content-Type', 'text/event-stream'],
  ['Transfer-Encoding', 'chunked'],
]);

export const ROLE = 'data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}\n\n';
export const token = (text: string): string =>
  `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":${JSON.stringify(text)}}}],"object":"chat.completion.chunk"}\n\n`;
export const FINISH = 'data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"object":"chat.completion.chunk"}\n\n';
export const DONE = 'data: [DONE]\n\n';
/** b6522+ framing of an in-band error: a plain `data:` line, the way b11669 sends KV exhaustion. */
export const inBandError = (code: number, type: string, message: string): string =>
  `data: ${JSON.stringify({ error: { code, message, type } })}\n\n`;

/** A healthy stream's events, `tokens` of them between the role chunk and [DONE]. */
export function healthyEvents(tokens: number): string[] {
  return [ROLE, ...Array.from({ length: tokens }, (_, i) => token(`t${i} `)), FINISH, DONE];
}

/** A whole chunked SSE response for these events, one HTTP chunk per event. */
export function sseResponse(events: readonly string[], end: 'clean' | 'eof' = 'clean'): Buffer[] {
  return [SSE_HEAD, ...events.map((e) => chunk(e)), ...(end === 'clean' ? [LAST_CHUNK] : [])];
}

export function gzipped(text: string): Buffer {
  return gzipSync(Buffer.from(text, 'utf8'));
}
