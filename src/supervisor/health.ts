/**
 * One health probe of llama-server: `GET /health`, 200 = ready, 503 = loading. The loops that call it
 * (supervisor, sidecar readiness) own the timing; this only answers "how is it now".
 */
import { request } from 'undici';

export type Health = 'ready' | 'loading' | 'down';

export async function probeOnce(origin: URL, timeoutMs: number): Promise<Health> {
  try {
    const res = await request(new URL('/health', origin), {
      method: 'GET',
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.body.dump();
    if (res.statusCode === 200) return 'ready';
    return res.statusCode === 503 ? 'loading' : 'down';
  } catch {
    return 'down';
  }
}
