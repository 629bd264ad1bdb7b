// Starts llama-status-proxy for tests: the built CLI as a child process (what users run), or in-process
// (fast, for the many-request fixture tests), both with their log lines captured as objects.
import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { projectRoot } from '../../src/project-root.js';
import { loadConfig, type OptionKey } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { startApp } from '../../src/app.js';

export const CLI = join(projectRoot(), 'bin', 'llama-status-proxy.js');

export type LogLine = Record<string, unknown> & { msg?: string };

export interface RunningProxy {
  url: string;
  /** Every JSON log line so far, parsed. */
  logs: LogLine[];
  /** Resolves with the first log line matching (each line is offered once, in order), waiting up to `ms`. */
  waitForLog(match: (line: LogLine) => boolean, ms?: number): Promise<LogLine>;
  stop(): Promise<void>;
}

export interface ChildProxy extends RunningProxy {
  child: ChildProcess;
  stderr(): string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
}

function logCollector(): { logs: LogLine[]; feed(text: string): void; waitForLog: RunningProxy['waitForLog'] } {
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  let partial = '';
  return {
    logs,
    feed(text: string) {
      partial += text;
      let nl: number;
      while ((nl = partial.indexOf('\n')) !== -1) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        try {
          logs.push(JSON.parse(line) as LogLine);
        } catch {
          logs.push({ msg: line, unparsed: true });
        }
        for (const w of waiters) w();
      }
    },
    waitForLog(match, ms = 10_000) {
      return new Promise((resolve, reject) => {
        // Each line is looked at once: a chatty child (llama-server logs every request) would make
        // re-scanning the whole log per new line quadratic.
        let next = 0;
        const check = (): boolean => {
          for (; next < logs.length; next++) {
            const line = logs[next] as LogLine;
            if (!match(line)) continue;
            clearTimeout(timer);
            waiters.delete(wake);
            resolve(line);
            return true;
          }
          return false;
        };
        const wake = (): void => void check();
        const timer = setTimeout(() => {
          waiters.delete(wake);
          reject(new Error(`no matching log line within ${ms} ms; got: ${JSON.stringify(logs.slice(-5))}`));
        }, ms);
        waiters.add(wake);
        check();
      });
    },
  };
}

/** The built CLI, exactly as a user starts it; `--port 0` unless the args say otherwise. */
export async function startProxyCli(args: string[], opts: { env?: Record<string, string>; readyMs?: number } = {}): Promise<ChildProxy> {
  const withPort = args.includes('--port') ? args : ['--port', '0', ...args];
  const child = spawn(process.execPath, [CLI, ...withPort], {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const collector = logCollector();
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (t: string) => collector.feed(t));
  child.stderr?.setEncoding('utf8').on('data', (t: string) => (stderr += t));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const listening = await Promise.race([
    collector.waitForLog((l) => l.msg === 'listening', opts.readyMs ?? 10_000),
    exited.then((code) => {
      throw new Error(`proxy exited (${code}) before listening: ${stderr}`);
    }),
  ]);
  return {
    url: String(listening.url).replace(/\/$/, ''),
    child,
    logs: collector.logs,
    waitForLog: collector.waitForLog,
    stderr: () => stderr,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** In-process proxy with the given options (upstream required in sidecar mode). */
export async function startProxy(options: Partial<Record<OptionKey, unknown>>): Promise<RunningProxy> {
  const collector = logCollector();
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      collector.feed(chunk.toString('utf8'));
      cb();
    },
  });
  const cli: Partial<Record<OptionKey, unknown>> = { port: '0', ...options };
  const config = loadConfig({ cli, env: {} });
  const app = await startApp(config, createLogger('info', sink));
  return {
    url: app.url.href.replace(/\/$/, ''),
    logs: collector.logs,
    waitForLog: collector.waitForLog,
    stop: () => app.stop(),
  };
}
