// What the reliability tests measure about a process from the outside: open descriptors, resident memory
// and the TCP connections still held on a port. Linux /proc only; the tests run on Linux CI.
import { readdirSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export type Pid = number | 'self';

export function fdCount(pid: Pid = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Resident set size in bytes, as the kernel counts it (heap, buffers and native memory alike). */
export function rssBytes(pid: Pid = 'self'): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS for process ${pid}`);
  return Number(m[1]) * 1024;
}

export const MB = 1024 * 1024;

export function mb(bytes: number): number {
  return Math.round((bytes / MB) * 10) / 10;
}

/** A change in MB with its sign, for "grew by" messages. */
export function deltaMb(bytes: number): string {
  const v = mb(bytes);
  return v >= 0 ? `+${v}` : `${v}`;
}

/** ESTABLISHED and CLOSE_WAIT: states in which some process still holds the socket open. */
const HELD_STATES = new Set(['01', '08']);
const LOOPBACK = '0100007F';

/**
 * Loopback TCP sockets with `port` at either end that are still held open. Both ends of a connection are
 * counted (the proxy's and the upstream's), so one live connection between two local processes counts 2.
 */
export function heldConnections(port: number): number {
  const endpoint = `${LOOPBACK}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (!HELD_STATES.has(f[3] ?? '')) continue;
    if (f[1] === endpoint || f[2] === endpoint) n++;
  }
  return n;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export type Timed<T> = { timedOut: false; value: T } | { timedOut: true };

/** Bounds a wait that might otherwise hang the test; the caller asserts on timedOut. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<Timed<T>> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Timed<T>>((resolve) => {
    timer = setTimeout(() => resolve({ timedOut: true }), ms);
  });
  try {
    return await Promise.race([promise.then((value): Timed<T> => ({ timedOut: false, value })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `done` every `stepMs` until it holds or `ms` have passed; returns whether it held. */
export async function settle(done: () => boolean, ms: number, stepMs = 25): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (let i = 0; i < Math.ceil(ms / stepMs) + 1; i++) {
    if (done()) return true;
    if (performance.now() >= deadline) break;
    await sleep(stepMs);
  }
  return done();
}

export { prng } from '../../helpers/prng.js';

let gcFn: (() => void) | undefined;

/**
 * A full garbage collection, so that "memory after" measures what is still referenced rather than how
 * far the collector happened to get. Works without --expose-gc on the command line.
 */
export function collectGarbage(): void {
  if (gcFn === undefined) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
}

export interface MemorySample {
  rss: number;
  heapUsed: number;
  /** Buffer contents live outside the JS heap; a leak of buffers shows here, not in heapUsed. */
  arrayBuffers: number;
}

/** What is still referenced: JS heap plus buffer contents. */
export function retained(m: MemorySample): number {
  return m.heapUsed + m.arrayBuffers;
}

/** Memory of this process after a full collection. */
export function memoryAfterGc(): MemorySample {
  collectGarbage();
  collectGarbage();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers };
}
