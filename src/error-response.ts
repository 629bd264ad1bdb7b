/**
 * Every error the client sees, in the envelope of the API it called: the upstream's in-band errors turned
 * into statuses, the proxy's own answers (not ready, too large, upstream unreachable) and the frames
 * written into a stream that has already started.
 */
import type { Dialect } from './routes.js';
import { isObject, type UpstreamErrorPayload } from './sse/classify.js';

/** llama-server's own type → status table (format_error_response, stable since b2400, llama.cpp #5961). */
const STATUS_BY_TYPE: Readonly<Record<string, number>> = {
  invalid_request_error: 400,
  exceed_context_size_error: 400,
  authentication_error: 401,
  permission_error: 403,
  not_found_error: 404,
  not_supported_error: 501,
  unavailable_error: 503,
  server_error: 500,
};

/** Anthropic clients switch on these names, not on llama-server's. */
function anthropicType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 503:
      return 'overloaded_error';
    default:
      return 'api_error';
  }
}

/** The OpenAI type the proxy uses for errors it makes itself. */
function openaiType(status: number): string {
  if (status === 503) return 'unavailable_error';
  if (status === 401) return 'authentication_error';
  return status < 500 ? 'invalid_request_error' : 'server_error';
}

export interface ErrorAnswer {
  readonly status: number;
  /** The upstream's `type` (or the proxy's own) for logs and metrics. */
  readonly type: string;
  readonly body: string;
}

/** The in-band error of a held stream, as the status and body llama-server sends for it without streaming. */
export function answerForUpstreamError(payload: UpstreamErrorPayload, dialect: Dialect): ErrorAnswer {
  if (!('json' in payload)) {
    const message = `llama-server reported an error that is not JSON: ${truncate(payload.text)}`;
    return ownError(502, dialect, message, 'bad_upstream_error');
  }
  const error = normalise(payload.json);
  const status = statusOf(error);
  const type = typeof error.type === 'string' ? error.type : 'server_error';
  if (dialect === 'anthropic') {
    const body = JSON.stringify({ type: 'error', error: { type: anthropicType(status), message: messageOf(error) } });
    return { status, type, body };
  }
  return { status, type, body: JSON.stringify({ error }) };
}

/** An answer the proxy makes itself. `code` is a stable string naming the condition. */
export function ownError(status: number, dialect: Dialect, message: string, code: string): ErrorAnswer {
  if (dialect === 'anthropic') {
    return { status, type: code, body: JSON.stringify({ type: 'error', error: { type: anthropicType(status), message } }) };
  }
  return { status, type: code, body: JSON.stringify({ error: { code, message, type: openaiType(status) } }) };
}

/**
 * The last event of a stream that cannot end well any more. OpenAI SDKs raise on `data` with a truthy
 * `error` (an `event:` name alone is not enough for them); Anthropic SDKs raise on `event: error`.
 */
export function errorFrame(dialect: Dialect, status: number, message: string, code: string): Buffer {
  if (dialect === 'anthropic') {
    const data = JSON.stringify({ type: 'error', error: { type: anthropicType(status), message } });
    return Buffer.from(`event: error\ndata: ${data}\n\n`);
  }
  return Buffer.from(`data: ${JSON.stringify({ error: { code, message, type: openaiType(status) } })}\n\n`);
}

/** A legacy `error: {...}` field after the commit, rewritten to the `data:` frame SDKs do see. */
export function legacyErrorFrame(fieldValue: string): Buffer {
  let error: Record<string, unknown>;
  try {
    error = normalise(JSON.parse(fieldValue));
  } catch {
    error = { code: 500, message: fieldValue, type: 'server_error' };
  }
  return Buffer.from(`data: ${JSON.stringify({ error })}`);
}

/**
 * The error object in llama-server's shape. b1542–b2399 sent `{"content": msg}` with no class; other
 * servers send a bare string. Upstream fields (n_prompt_tokens, n_ctx, param) are kept as they came.
 */
function normalise(value: unknown): Record<string, unknown> {
  if (isObject(value)) {
    if (typeof value.message === 'string') return value;
    if (typeof value.content === 'string' && value.code === undefined) {
      return { code: 500, message: value.content, type: 'server_error' };
    }
    return { ...value, message: JSON.stringify(value) };
  }
  return { code: 500, message: typeof value === 'string' ? value : JSON.stringify(value), type: 'server_error' };
}

function statusOf(error: Record<string, unknown>): number {
  const code = error.code;
  if (typeof code === 'number' && Number.isInteger(code) && code >= 400 && code <= 599) return code;
  const byType = typeof error.type === 'string' ? STATUS_BY_TYPE[error.type] : undefined;
  if (byType !== undefined) return byType;
  // kronk sends the type name as a string `code`
  const byCode = typeof code === 'string' ? STATUS_BY_TYPE[code] : undefined;
  return byCode ?? 500;
}

function messageOf(error: Record<string, unknown>): string {
  return typeof error.message === 'string' ? error.message : 'llama-server reported an error';
}

function truncate(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
