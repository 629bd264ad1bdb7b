/**
 * Wiring: from a validated Config to a listening proxy, in sidecar mode (someone else runs llama-server)
 * or supervised mode (llama-server is our child).
 */
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { ProxyServer } from './proxy/server.js';
import { SidecarReadiness } from './sidecar-readiness.js';

export interface App {
  readonly url: URL;
  /** Drains requests, stops the child if there is one, and closes everything. */
  stop(): Promise<void>;
  /** Resolves when the app cannot go on (a crash loop with exitOnCrashLoop); never rejects. */
  readonly failed: Promise<string>;
}

export async function startApp(config: Config, log: Logger): Promise<App> {
  const upstream = config.upstream;
  if (upstream === undefined) throw new Error('supervised mode is not available yet');
  const readiness = new SidecarReadiness(upstream, { intervalMs: config.healthIntervalMs, timeoutMs: config.healthTimeoutMs, log });
  readiness.start();
  const server = new ProxyServer({ config, upstream, log, readiness, gateTraffic: false });
  const address = await server.listen();
  const url = new URL(`http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`);
  log.info({ url: url.href, mode: 'sidecar', upstream: upstream.origin }, 'listening');
  return {
    url,
    failed: new Promise<string>(() => undefined),
    async stop() {
      readiness.stop();
      await server.drain();
    },
  };
}
