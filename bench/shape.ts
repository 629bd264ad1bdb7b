/**
 * What the fake upstream sends, shared with the load generator so it can check every body byte count
 * without parsing events. The events copy llama-server b11669's chat stream: a role chunk, content
 * chunks, a finish chunk, `data: [DONE]`.
 */

export interface StreamShape {
  /** Events in the stream, all included: role, content…, finish, [DONE]. At least 4. */
  readonly events: number;
  /** Target size in bytes of one content event (`data: …\n\n`); padded with content text. */
  readonly size: number;
  /** Milliseconds between two content events; 0 writes them as fast as the socket takes them. */
  readonly paceMs: number;
  /**
   * Keep the connection open after the stream. llama-server does not: it closes every connection ~2 ms
   * after a stream's last byte (b11669 REPORT.md, "Successful streams"), so that is the default here;
   * `true` models some other server, for the cost of the proxy's fresh connection per stream.
   */
  readonly keepAlive?: boolean;
}

const CREATED = 1764000000;
const ID = 'chatcmpl-bEnChMaRk0000000000000000000000';
const TAIL = `"created":${CREATED},"id":"${ID}","model":"tiny.gguf","system_fingerprint":"b11669-Debian","object":"chat.completion.chunk"}`;

export const ROLE_EVENT = `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],${TAIL}\n\n`;
export const FINISH_EVENT = `data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],${TAIL}\n\n`;
export const DONE_EVENT = 'data: [DONE]\n\n';

/** Token-like filler; contains nothing the proxy looks for (no line starts, no `error:`). */
const FILLER = ' the quick brown fox jumps over a lazy dog';

export function contentEvent(size: number): string {
  const bare = (content: string): string =>
    `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"${content}"}}],${TAIL}\n\n`;
  const base = bare('x').length;
  let content = 'x';
  while (base + content.length - 1 < size) content += FILLER;
  return bare(content.slice(0, Math.max(1, size - base + 1)));
}

/** Body bytes of a stream of this shape (before transfer coding). */
export function streamBodyBytes(shape: StreamShape): number {
  const n = Math.max(4, shape.events);
  return ROLE_EVENT.length + (n - 3) * contentEvent(shape.size).length + FINISH_EVENT.length + DONE_EVENT.length;
}

/** The non-stream answer: one chat.completion JSON object. */
export const JSON_ANSWER = JSON.stringify({
  choices: [{ finish_reason: 'stop', index: 0, message: { role: 'assistant', content: 'Hello! How can I help you today?' } }],
  created: CREATED,
  model: 'tiny.gguf',
  system_fingerprint: 'b11669-Debian',
  object: 'chat.completion',
  usage: { completion_tokens: 10, prompt_tokens: 20, total_tokens: 30 },
  id: ID,
  timings: { prompt_n: 20, prompt_ms: 5.1, predicted_n: 10, predicted_ms: 50.2 },
});

/** The request target that asks the fake upstream for this shape (the query survives every proxy). */
export function streamPath(shape: StreamShape): string {
  return `/v1/chat/completions?n=${shape.events}&size=${shape.size}&pace=${shape.paceMs}${shape.keepAlive ? '&keepalive=1' : ''}`;
}

export const JSON_PATH = '/v1/chat/completions?json=1';

export const REQUEST_BODY = JSON.stringify({ model: 'tiny.gguf', stream: true, messages: [{ role: 'user', content: 'Hi' }] });
/** The non-stream request says so, as a real client's does: the proxy keeps such upstream connections alive. */
export const JSON_REQUEST_BODY = JSON.stringify({ model: 'tiny.gguf', stream: false, messages: [{ role: 'user', content: 'Hi' }] });

/** Parses what streamPath wrote; anything missing falls back to a short unpaced stream. */
export function parseShape(query: URLSearchParams): StreamShape {
  const int = (name: string, fallback: number): number => {
    const v = Number(query.get(name));
    return Number.isFinite(v) && v >= 0 ? Math.floor(v) : fallback;
  };
  return { events: Math.max(4, int('n', 4)), size: int('size', 250), paceMs: int('pace', 0), keepAlive: query.has('keepalive') };
}
