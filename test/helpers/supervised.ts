// Shared by the supervisor tests (test/supervisor/): the built CLI in supervised mode in front of a real
// llama-server on the tiny model, and the few readers needed to say what an operator sees (log lines, the
// process table, the answers). It lives here, not in test/supervisor/, because `tap dist/test/supervisor`
// runs every .js file of that folder as a test.
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { findLlamaServer, LLAMA_SERVER_INSTALL_HINT } from '../../src/llama-server-binary.js';
import { ensureTinyModel } from '../../src/tiny-model/ensure.js';
import { longContextModel } from './e2e.js';
import { startProxyCli, type ChildProxy, type LogLine } from './proxy.js';
import { sseData } from './e2e.js';

export type { ChildProxy, LogLine };

export function llamaServerPath(): string {
  const path = findLlamaServer();
  // Fail, never skip, without a binary: a silently skipped suite hides a broken setup.
  if (path === undefined) throw new Error(LLAMA_SERVER_INSTALL_HINT);
  return path;
}

/** `-- llama-server -m tiny.gguf -c 256 …extra`: what a user puts after the proxy's own options. */
export function childCommand(extra: string[] = [], context = 256): string[] {
  return ['--', llamaServerPath(), '-m', ensureTinyModel(), '-c', String(context), ...extra];
}

/**
 * For a stream that must still be running when the test acts on it, even on a loaded machine where the
 * test process gets little CPU while llama-server races on: with -c 256 the tiny model stops at the
 * context end after ~200 tokens (~0.15 s); on the 32k tiny model with -c 8192 and one slot, LONG_STREAM
 * takes about 25 s. The tests cut it short long before that.
 */
export function longStreamChildCommand(): string[] {
  return ['--', llamaServerPath(), '-m', longContextModel(), '-c', '8192', '-np', '1'];
}

/**
 * The CLI in supervised mode with short intervals. Whatever happens to the test, the proxy is SIGKILLed
 * when the test process exits, and llama-server with it (pdeathsig) — the safety net below also kills
 * any child group still alive.
 */
export async function startSupervised(
  proxyArgs: string[],
  child: string[] = childCommand(),
  env: Record<string, string> = {},
): Promise<ChildProxy> {
  const proxy = await startProxyCli(['--health-interval-ms', '500', ...proxyArgs, ...child], { env });
  track(proxy);
  return proxy;
}

/**
 * A Node script exactly as given (startProxyCli adds `--port 0` when the args have no `--port`, which
 * would hide the drop-in port from the environment), with its JSON log lines parsed as they come.
 */
export async function spawnExact(script: string, args: string[], env: Record<string, string> = {}, ms = 30_000): Promise<ChildProxy> {
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  let stderr = '';
  let partial = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ msg: line, unparsed: true });
      }
    }
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const waitForLog = async (match: (line: LogLine) => boolean, wait = 10_000): Promise<LogLine> => {
    const deadline = Date.now() + wait;
    for (;;) {
      const found = logs.find(match);
      if (found !== undefined) return found;
      if (Date.now() >= deadline) throw new Error(`no matching log line within ${wait} ms; got: ${JSON.stringify(logs.slice(-5))}`);
      await sleep(20);
    }
  };
  const proxy: ChildProxy = {
    url: '',
    child,
    logs,
    waitForLog,
    stderr: () => stderr,
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  track(proxy);
  const listening = await Promise.race([
    waitForLog((l) => l.msg === 'listening', ms),
    exited.then((code) => {
      throw new Error(`exited (${code}) before listening: ${stderr}`);
    }),
  ]);
  proxy.url = String(listening.url).replace(/\/$/, '');
  return proxy;
}

const tracked = new Set<ChildProxy>();
function track(proxy: ChildProxy): void {
  tracked.add(proxy);
}
process.once('exit', () => {
  for (const proxy of tracked) {
    for (const pid of childPids(proxy)) killGroupIfOurs(pid);
    if (proxy.child.exitCode === null && proxy.child.signalCode === null) proxy.child.kill('SIGKILL');
  }
});

function killGroupIfOurs(pid: number): void {
  if (!isAlive(pid) || !/llama-server/.test(cmdline(pid))) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

// ---- log lines ------------------------------------------------------------------------------------

/** Own log lines only; llama-server's output arrives as log lines too, with `"source":"llama-server"`. */
export function ownLogs(proxy: ChildProxy): LogLine[] {
  return proxy.logs.filter((l) => l.source !== 'llama-server');
}

/** The pid of every llama-server started so far, in order, from the `llama-server starting` lines. */
export function childPids(proxy: { logs: LogLine[] }): number[] {
  return proxy.logs.filter((l) => l.msg === 'llama-server starting' && l.source === undefined).map((l) => Number(l.pid));
}

/** Waits for the n-th (1-based) `llama-server starting` line and returns its pid. */
export async function nthChildPid(proxy: ChildProxy, n: number, ms = 15_000): Promise<number> {
  await proxy.waitForLog(() => childPids(proxy).length >= n, ms);
  return childPids(proxy)[n - 1] ?? -1;
}

// ---- HTTP -----------------------------------------------------------------------------------------

export const CHAT_PATH = '/v1/chat/completions';

export function chat(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'tiny', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, ...extra };
}

/** Long enough to still be generating when the test acts on it (see longStreamChildCommand). */
export const LONG_STREAM = chat({ max_tokens: 8000, ignore_eos: true, stream: true });

export async function post(url: string, body: unknown, timeoutMs = 20_000): Promise<Response> {
  return fetch(`${url}${CHAT_PATH}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
}

export async function getStatus(url: string, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: await res.text() };
}

/** Polls GET path until it answers `status`; throws after `ms`. */
export async function waitStatus(url: string, path: string, status: number, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  let last = 'nothing';
  while (Date.now() < deadline) {
    try {
      const r = await getStatus(url, path);
      if (r.status === status) return;
      last = `${r.status} ${r.body}`;
    } catch (err) {
      last = String(err);
    }
    await sleep(50);
  }
  throw new Error(`${path} did not answer ${status} within ${ms} ms; last: ${last}`);
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * One request on a connection of its own, as a new client would send it; fetch could pick a pooled
 * keep-alive connection that the server is closing at that moment (a shutdown closes idle ones).
 */
export function newClientRequest(url: string, path: string, body?: unknown, ms = 10_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = httpRequest(`${url}${path}`, {
      method: payload === undefined ? 'GET' : 'POST',
      agent: false,
      headers: payload === undefined ? {} : { 'content-type': 'application/json' },
      signal: AbortSignal.timeout(ms),
    });
    req.once('error', reject);
    req.once('response', (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      res.once('error', reject);
    });
    req.end(payload);
  });
}

export interface StreamRead {
  status: number;
  /** The `data:` payloads, event by event. */
  data: string[];
}

/**
 * Reads an SSE response to its end (bounded by the fetch's own timeout), calling `onEvent` with the
 * number of events so far whenever it grows.
 */
export async function readStream(res: Response, onEvent: (events: number) => void = () => undefined): Promise<StreamRead> {
  const reader = res.body?.getReader();
  if (reader === undefined) throw new Error('no body');
  const decoder = new TextDecoder();
  let text = '';
  let events = 0;
  let scanned = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
    const before = events;
    for (let end = text.indexOf('\n\n', scanned); end !== -1; end = text.indexOf('\n\n', scanned)) {
      events++;
      scanned = end + 2;
    }
    if (events > before) onEvent(events);
  }
  return { status: res.status, data: sseData(text) };
}

// ---- processes ------------------------------------------------------------------------------------

/** Alive = in the process table and not a zombie waiting for its parent. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

export function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** Polls /proc until `pid` is gone; true if it went within `ms`. */
export async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(25);
  }
  return true;
}

/** The TCP ports `pid` listens on, as `ss -ltnp` would show them: its socket inodes in /proc/net/tcp{,6}. */
export function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1] !== undefined) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex; st 0A is LISTEN; the inode is the 10th field
      if (f[3] === '0A' && inodes.has(f[9] ?? '')) ports.push(parseInt(f[1]?.split(':')[1] ?? '', 16));
    }
  }
  return ports;
}

export interface ProcessRow {
  pid: number;
  pgid: number;
  args: string;
}

/** `ps -eo pid,pgid,args`, as an operator would look. */
export function processTable(): ProcessRow[] {
  const out = execFileSync('ps', ['-eo', 'pid=,pgid=,stat=,args='], { encoding: 'utf8' });
  return out
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\d+)\s+(\S+)\s+(.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null && !(m[3] ?? '').startsWith('Z'))
    .map((m) => ({ pid: Number(m[1]), pgid: Number(m[2]), args: m[4] ?? '' }));
}

/** Rows of the process table that belong to this proxy: itself, its children's groups, or its private port. */
export function leftovers(proxy: ChildProxy): ProcessRow[] {
  const pids = new Set([proxy.child.pid, ...childPids(proxy)]);
  const port = privatePort(proxy);
  const onPort = new RegExp(`--port ${port ?? 'none'}(\\s|$)`);
  return processTable().filter((r) => pids.has(r.pid) || pids.has(r.pgid) || onPort.test(r.args));
}

/** The loopback port llama-server was given, from the `listening` line. */
export function privatePort(proxy: ChildProxy): number | undefined {
  const line = proxy.logs.find((l) => l.msg === 'listening');
  return typeof line?.child === 'string' ? Number(new URL(line.child).port) : undefined;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** `promise`, or 'timeout' after `ms`; the timer does not outlive the answer. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
