/**
 * One run of llama-server as a child: spawned in its own process group (so a stop reaches everything it
 * started), its output turned into log lines, and tied to our life so it cannot outlive a SIGKILLed proxy.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Logger } from '../log.js';

/**
 * Node cannot call prctl(PR_SET_PDEATHSIG) itself. util-linux's setpriv (Essential in Debian, present in
 * slim images) can, and the setting survives the exec into llama-server: when the proxy dies, even by
 * SIGKILL, the kernel kills the child.
 */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last lines llama-server wrote, to say why it died. */
  readonly lastLines: readonly string[];
}

const KEPT_LINES = 20;

export class LlamaServerProcess {
  readonly #child: ChildProcess;
  readonly #lastLines: string[] = [];
  readonly exited: Promise<ChildExit>;

  constructor(command: string, args: readonly string[], env: Record<string, string>, log: Logger) {
    const [file, argv] = SETPRIV !== undefined ? [SETPRIV, ['--pdeathsig', 'SIGKILL', '--', command, ...args]] : [command, [...args]];
    this.#child = spawn(file, argv, { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const childLog = log.child({ source: 'llama-server' });
    for (const [stream, name] of [
      [this.#child.stdout, 'stdout'],
      [this.#child.stderr, 'stderr'],
    ] as const) {
      if (stream === null) continue;
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        this.#lastLines.push(line);
        if (this.#lastLines.length > KEPT_LINES) this.#lastLines.shift();
        childLog.info({ stream: name }, line);
      });
    }
    this.exited = new Promise((resolve) => {
      this.#child.once('error', (err) => {
        this.#lastLines.push(`cannot start ${command}: ${err.message}`);
        resolve({ code: null, signal: null, lastLines: [...this.#lastLines] });
      });
      // 'close' waits for the output pipes, so the last lines are in.
      this.#child.once('close', (code, signal) => resolve({ code, signal, lastLines: [...this.#lastLines] }));
    });
    if (!SETPRIV) log.warn('setpriv not found: llama-server may outlive a proxy that is killed with SIGKILL');
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Signals the whole process group; false when it is already gone. */
  signal(sig: NodeJS.Signals): boolean {
    const pid = this.#child.pid;
    if (pid === undefined || this.#child.exitCode !== null || this.#child.signalCode !== null) return false;
    try {
      process.kill(-pid, sig);
      return true;
    } catch {
      return false;
    }
  }

  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves once it has exited. */
  async stop(graceMs: number): Promise<ChildExit> {
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
