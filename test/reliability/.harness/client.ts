// One HTTP exchange as a client sees it, always bounded by a client-side timeout so that a proxy that
// hangs shows up as `end: 'timeout'` instead of a stuck test.
import { request, type Agent, type IncomingHttpHeaders } from 'node:http';

export interface Seen {
  status: number | undefined;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /**
   * complete: the response ended normally; cut: headers came, then the connection broke; failed: no
   * response at all (refused, reset); timeout: the client gave up after `timeoutMs`.
   */
  end: 'complete' | 'cut' | 'failed' | 'timeout';
  error?: string;
  /** From sending to the response head. */
  headersMs?: number;
  /** From sending to the end, whatever it was. */
  ms: number;
}

export interface PostOptions {
  headers?: Record<string, string>;
  body?: string | Buffer;
  method?: string;
  timeoutMs: number;
  /** false (the default): a fresh connection that closes after the exchange, so nothing lingers. */
  agent?: Agent | false;
}

export function send(base: string, path: string, opts: PostOptions): Promise<Seen> {
  const started = performance.now();
  const body = opts.body ?? (opts.method === 'GET' ? undefined : '{"stream":true}');
  return new Promise((resolve) => {
    let settled = false;
    const parts: Buffer[] = [];
    let seen: Pick<Seen, 'status' | 'headers' | 'headersMs'> = { status: undefined, headers: {} };
    const done = (end: Seen['end'], error?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ ...seen, body: Buffer.concat(parts), end, ms: performance.now() - started, ...(error !== undefined ? { error } : {}) });
    };
    const req = request(`${base}${path}`, {
      method: opts.method ?? 'POST',
      agent: opts.agent ?? false,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...opts.headers },
    });
    const timer = setTimeout(() => {
      done('timeout');
      req.destroy();
    }, opts.timeoutMs);
    req.on('response', (res) => {
      seen = { status: res.statusCode, headers: res.headers, headersMs: performance.now() - started };
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => done('complete'));
      res.on('error', (err) => done('cut', err.message));
      res.on('close', () => {
        if (!res.complete) done('cut', 'closed before the end');
      });
    });
    req.on('error', (err) => done(seen.status === undefined ? 'failed' : 'cut', err.message));
    req.end(body);
  });
}

/** The `data:` JSON of the last event in an SSE body, or undefined. */
export function lastEventData(body: Buffer | string): unknown {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  const events = text.split(/\r\n\r\n|\n\n|\r\r/).filter((e) => e.trim() !== '');
  const last = events[events.length - 1];
  if (last === undefined) return undefined;
  const data = last
    .split(/\r\n|\n|\r/)
    .filter((l) => l.startsWith('data:'))
    .map((l) => l.slice(5).replace(/^ /, ''))
    .join('\n');
  try {
    return JSON.parse(data) as unknown;
  } catch {
    return undefined;
  }
}

/** `{"error":{"code":…}}` → the code, for the proxy's own JSON bodies and error frames alike. */
export function errorCode(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return undefined;
  const error = (value as { error?: unknown }).error;
  if (typeof error !== 'object' || error === null) return undefined;
  return (error as { code?: unknown }).code;
}

export function jsonOf(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}
