/**
 * Wiring: from a validated Config to a listening proxy, in sidecar mode (someone else runs llama-server)
 * or supervised mode (llama-server is our child).
 */
import type { AddressInfo } from 'node:net';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { ProxyServer } from './proxy/server.js';
import { SidecarReadiness } from './sidecar-readiness.js';
import { Supervisor } from './supervisor/supervisor.js';
import { rewriteChildCommandLine } from './supervisor/command-line.js';
import { freePort } from './free-port.js';

export interface App {
  readonly url: URL;
  /** Drains requests, stops the child if there is one, and closes everything. */
  stop(): Promise<void>;
  /** Resolves when the app cannot go on (a crash loop with exitOnCrashLoop); never rejects. */
  readonly failed: Promise<string>;
  /** Supervised mode only. */
  readonly supervisor?: Supervisor;
}

/** How long llama-server must stay healthy before its restart backoff starts over. */
const BACKOFF_RESET_MS = 120_000;

export function startApp(config: Config, log: Logger): Promise<App> {
  return config.command !== undefined ? startSupervised(config, config.command, log) : startSidecar(config, log);
}

async function startSidecar(config: Config, log: Logger): Promise<App> {
  const upstream = config.upstream;
  if (upstream === undefined) throw new Error('sidecar mode needs an upstream');
  const readiness = new SidecarReadiness(upstream, { intervalMs: config.healthIntervalMs, timeoutMs: config.healthTimeoutMs, log });
  readiness.start();
  const server = new ProxyServer({ config, upstream, log, readiness, gateTraffic: false });
  const url = urlOf(await server.listen());
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

async function startSupervised(config: Config, command: string, log: Logger): Promise<App> {
  const childPort = await freePort();
  const child = rewriteChildCommandLine(config.args, { ...process.env, ...config.env }, childPort);
  // Drop-in: the address the user gave llama-server is now ours, unless our own options say otherwise.
  const own = {
    ...config,
    host: config.setByUser.has('host') || child.host === undefined ? config.host : child.host,
    port: config.setByUser.has('port') || child.port === undefined ? config.port : Number(child.port),
  };
  if (!Number.isInteger(own.port) || own.port < 0 || own.port > 65535) throw new Error(`llama-server --port: not a port: ${child.port}`);
  const origin = new URL(`http://127.0.0.1:${childPort}`);
  let failed: (reason: string) => void = () => undefined;
  const failedPromise = new Promise<string>((resolve) => (failed = resolve));
  let server: ProxyServer | undefined;
  const supervisor = new Supervisor({
    command,
    args: child.args,
    env: child.env,
    origin,
    log,
    startupTimeoutMs: config.startupTimeoutMs,
    healthIntervalMs: config.healthIntervalMs,
    healthTimeoutMs: config.healthTimeoutMs,
    healthFailureThreshold: config.healthFailureThreshold,
    stopGraceMs: config.stopGraceMs,
    backoff: {
      initialMs: config.restartBackoffInitialMs,
      maxMs: config.restartBackoffMaxMs,
      resetAfterMs: BACKOFF_RESET_MS,
      maxFailures: config.crashLoopMaxStarts,
      windowMs: config.crashLoopWindowMs,
    },
    progress: () => server?.progress.bytes ?? 0,
    onCrashLoop: (reason) => {
      if (config.exitOnCrashLoop) failed(reason);
    },
  });
  server = new ProxyServer({
    config: own,
    upstream: origin,
    log,
    readiness: supervisor,
    gateTraffic: true,
    restarts: () => supervisor.restarts, // upstream_restarts_total
  });
  const url = urlOf(await server.listen());
  supervisor.start();
  log.info({ url: url.href, mode: 'supervised', child: origin.origin }, 'listening');
  const proxy = server;
  return {
    url,
    supervisor,
    failed: failedPromise,
    async stop() {
      await proxy.drain();
      await supervisor.stop();
    },
  };
}

function urlOf(address: AddressInfo): URL {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return new URL(`http://${host}:${address.port}`);
}
