// Starts a real llama-server on the tiny generated model, for tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { findLlamaServer, LLAMA_SERVER_INSTALL_HINT } from '../../src/llama-server-binary.js';
import { projectRoot } from '../../src/project-root.js';
import { ensureTinyModel } from '../../src/tiny-model/ensure.js';
import { freePort } from '../../src/free-port.js';

export interface StartOptions {
  /** Extra llama-server arguments; default `-c 256 -np 1`. -m, --host and --port are always set. */
  args?: string[];
  env?: Record<string, string>;
  /** Model file; default: the tiny generated model. */
  model?: string;
}

export interface RunningLlamaServer {
  url: string;
  port: number;
  pid: number;
  /** The last ~100 lines llama-server wrote to stderr (it logs nothing to stdout). */
  stderr(): string;
  /** SIGTERM to the process group, SIGKILL after 5 s; resolves once it has exited. */
  stop(): Promise<void>;
}

const DEFAULT_ARGS = ['-c', '256', '-np', '1'];
const STDERR_LINES = 100;
const READY_TIMEOUT_MS = 30_000;
const POLL_MS = 50;
const KILL_AFTER_MS = 5_000;
const PORT_ATTEMPTS = 3;

/** Chat template that makes llama-server parse tool calls (REPORT §3.3). */
export const HERMES_TOOLS_TEMPLATE = join(projectRoot(), 'test', 'fixtures', 'hermes-tools.jinja');

/** Server args for TOOL_PARSE_ERROR_REQUEST: its prompt is ~470 tokens (the tiny vocabulary is mostly single characters), too many for -c 256. */
export const TOOL_PARSE_ERROR_SERVER_ARGS = ['-c', '1024', '-np', '1', '--chat-template-file', HERMES_TOOLS_TEMPLATE];

export interface ChatRequestBody {
  messages: Array<{ role: string; content: string }>;
  tools: Array<{ type: 'function'; function: { name: string; description: string; parameters: object } }>;
  max_tokens: number;
  stream: boolean;
}

/**
 * A /v1/chat/completions body that makes llama-server b11669 (started with
 * TOOL_PARSE_ERROR_SERVER_ARGS) fail its tool-call parse. Streaming, the answer
 * is `200`, the role chunk, then
 *   data: {"error":{"code":500,"message":"The model produced output that does not match the expected peg-native format","type":"server_error"}}
 * and no [DONE]; non-streaming it is a plain HTTP 500 with that error.
 * The random model cannot write a tool call, so the assistant prefill stands in
 * for its output: a call to a function that is not in `tools`. Verified 15/15
 * in both modes; the same body with the default ChatML template gives a normal
 * stream, so it is the template that engages the parser.
 * The exact bytes sent:
 *   {"messages":[{"role":"user","content":"weather?"},
 *     {"role":"assistant","content":"<tool_call>\n{\"name\": \"unknown_fn\", \"arguments\": {\"a\": 1}}\n</tool_call>"}],
 *    "tools":[{"type":"function","function":{"name":"get_weather","description":"w",
 *     "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],
 *    "max_tokens":4,"stream":true}
 */
export function TOOL_PARSE_ERROR_REQUEST(stream = true): ChatRequestBody {
  return {
    messages: [
      { role: 'user', content: 'weather?' },
      { role: 'assistant', content: '<tool_call>\n{"name": "unknown_fn", "arguments": {"a": 1}}\n</tool_call>' },
    ],
    tools: [
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'w',
          parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
      },
    ],
    max_tokens: 4,
    stream,
  };
}

export { freePort };

export async function startLlamaServer(opts: StartOptions = {}): Promise<RunningLlamaServer> {
  const binary = findLlamaServer();
  // Tests must fail, not skip, without a binary: a silently skipped suite hides a broken CI setup.
  if (!binary) throw new Error(LLAMA_SERVER_INSTALL_HINT);
  const model = opts.model ?? ensureTinyModel();
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      return await startOn(binary, model, port, opts);
    } catch (err) {
      // Between freePort() and bind another process may take the port; try another.
      if (attempt >= PORT_ATTEMPTS || !(err instanceof PortInUseError)) throw err;
    }
  }
}

class PortInUseError extends Error {}

async function startOn(binary: string, model: string, port: number, opts: StartOptions): Promise<RunningLlamaServer> {
  const args = ['-m', model, '--host', '127.0.0.1', '--port', String(port), ...(opts.args ?? DEFAULT_ARGS)];
  // detached: its own process group, so stop() reaches anything it spawned too.
  const child = spawn(binary, args, {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  const log = new TailLog(STDERR_LINES);
  child.stderr?.setEncoding('utf8').on('data', (s: string) => log.push(s));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const spawnError = await spawned(child);
  if (spawnError || child.pid === undefined) {
    throw new Error(`cannot start ${binary}: ${spawnError?.message ?? 'no pid'}\n${LLAMA_SERVER_INSTALL_HINT}`);
  }
  const pid = child.pid;
  live.add(pid);
  exited.then(() => live.delete(pid), () => undefined);
  const url = `http://127.0.0.1:${port}`;
  const server: RunningLlamaServer = {
    url,
    port,
    pid,
    stderr: () => log.text(),
    stop: once1(() => stopGroup(child, exited)),
  };
  try {
    await waitHealthy(url, child, log);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

function spawned(child: ChildProcess): Promise<Error | undefined> {
  return new Promise((resolve) => {
    child.once('spawn', () => resolve(undefined));
    child.once('error', (err) => resolve(err));
  });
}

async function waitHealthy(url: string, child: ChildProcess, log: TailLog): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const tail = log.text();
      const why = `llama-server exited (${child.exitCode ?? child.signalCode}) before /health answered 200`;
      if (/couldn't bind HTTP server socket/.test(tail)) throw new PortInUseError(`${why}\n${tail}`);
      throw new Error(`${why}; stderr tail:\n${tail}`);
    }
    if (await healthOk(url)) return;
    await sleep(POLL_MS);
  }
  throw new Error(`llama-server /health not 200 after ${READY_TIMEOUT_MS} ms; stderr tail:\n${log.text()}`);
}

async function healthOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    // Refused while the socket is not yet bound; 503 while loading is a normal answer.
    return false;
  }
}

async function stopGroup(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  signalGroup(child.pid, 'SIGTERM');
  // b11669 can hang after SIGTERM while a request is in flight (REPORT §6), hence the SIGKILL.
  const timer = setTimeout(() => signalGroup(child.pid ?? 0, 'SIGKILL'), KILL_AFTER_MS);
  await exited;
  clearTimeout(timer);
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

/** Process groups still running, killed if the test process exits without stop(). */
const live = new Set<number>();
process.once('exit', () => {
  for (const pid of live) signalGroup(pid, 'SIGKILL');
});

function once1(fn: () => Promise<void>): () => Promise<void> {
  let p: Promise<void> | undefined;
  return () => (p ??= fn());
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Keeps the last N complete lines (plus any partial one) of a text stream. */
class TailLog {
  #lines: string[] = [];
  #partial = '';
  constructor(readonly max: number) {}

  push(chunk: string): void {
    const parts = (this.#partial + chunk).split('\n');
    this.#partial = parts.pop() ?? '';
    this.#lines.push(...parts);
    if (this.#lines.length > this.max) this.#lines.splice(0, this.#lines.length - this.max);
  }

  text(): string {
    return [...this.#lines, this.#partial].join('\n').trimEnd();
  }
}
