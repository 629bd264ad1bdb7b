/**
 * One health probe of llama-server: `GET /health`, 200 = ready, 503 = loading. The loops that call it
 * (supervisor, sidecar readiness) own the timing; this only answers "how is it now".
 *
 * It uses node:http, which the proxy's own server has loaded anyway: undici's `request` would load undici's
 * whole index (see proxy/undici-parts.ts) for one GET every few seconds.
 */
import { get } from 'node:http';

export type Health = 'ready' | 'loading' | 'down';

export function probeOnce(origin: URL, timeoutMs: number): Promise<Health> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (health: Health): void => {
      if (settled) return;
      settled = true;
      resolve(health);
    };
    // A connection of its own (agent: false): a probe every few seconds gains nothing from keep-alive, and
    // a kept socket that the server has closed meanwhile would make one probe fail for nothing.
    const req = get(new URL('/health', origin), { agent: false, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      const status = res.statusCode;
      // The whole answer, as before: a server that sends its status and then hangs is not healthy.
      res.on('end', () => settle(status === 200 ? 'ready' : status === 503 ? 'loading' : 'down'));
      res.on('close', () => settle('down')); // no effect after 'end'
      res.on('error', () => settle('down'));
      res.resume();
    });
    req.on('error', () => settle('down'));
  });
}
