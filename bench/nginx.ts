/**
 * nginx as an optional fourth target: what a C proxy costs for the same streams. Used when an nginx
 * binary is found (BENCH_NGINX, PATH, or the usual sbin folders, which are often not on PATH); the
 * benchmark runs without it. One worker process, like the single-threaded Node targets; its config is
 * generated into a temporary folder that is removed afterwards.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export function findNginx(): string | undefined {
  const fromEnv = process.env.BENCH_NGINX;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  const candidates = fromEnv ? [fromEnv] : dirs.filter((d) => d !== '').map((d) => join(d, 'nginx'));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface RunningNginx {
  readonly origin: string;
  /** Master and worker; the worker does all the proxying. */
  readonly pids: number[];
  readonly version: string;
  stop(): Promise<void>;
}

function config(dir: string, port: number, upstreamPort: number): string {
  // As root, nginx would switch its worker to "nobody"; keep the invoking user so temp paths stay ours.
  const user = process.getuid?.() === 0 ? 'user root;' : '';
  return `
daemon off;
master_process on;
worker_processes 1;
${user}
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'proxy')};
  # No upstream keepalive: nginx would send the next request on a stream's connection, which llama-server
  # closes right after the stream; against the real b11669, 2 of 20 back-to-back streams got a 502
  # ("upstream prematurely closed connection"), here all of them. So nginx connects per request.
  upstream llama { server 127.0.0.1:${upstreamPort}; }
  server {
    listen 127.0.0.1:${port};
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://llama;
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 300s;
    }
  }
}
`;
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export async function startNginx(binary: string, port: number, upstreamPort: number): Promise<RunningNginx> {
  const dir = mkdtempSync(join(tmpdir(), 'lsp-bench-nginx-'));
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, config(dir, port, upstreamPort));
  const child: ChildProcess = spawn(binary, ['-p', dir, '-c', conf, '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (t: string) => (stderr += t));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pid = child.pid ?? 0;
  const deadline = Date.now() + 10_000;
  let workers: number[] = [];
  while (Date.now() < deadline && child.exitCode === null) {
    workers = childrenOf(pid);
    if (workers.length > 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (workers.length === 0) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`nginx did not start: ${stderr.trim()}`);
  }
  const versionRun = spawn(binary, ['-v'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let version = '';
  versionRun.stderr?.setEncoding('utf8').on('data', (t: string) => (version += t));
  await new Promise((r) => versionRun.once('exit', r));
  return {
    origin: `http://127.0.0.1:${port}`,
    pids: [pid, ...workers],
    version: version.trim().replace(/^nginx version: /, ''),
    async stop() {
      child.kill('SIGQUIT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
