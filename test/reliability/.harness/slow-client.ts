// A client that reads one byte per millisecond from a stream far longer than any buffer on the way.
// The upstream here honours backpressure (unlike the fake upstream, which writes whatever it is told),
// so how much it managed to send shows whether the proxy stopped reading from it.
import net from 'node:net';
import { startProxyCli } from '../../helpers/proxy.js';
import { rssBytes, settle, sleep, within, MB } from './probes.js';
import { chunk, head, ROLE, SSE_HEAD, token } from './wire.js';

export type SlowMode = 'sse' | 'verbatim';

interface Generated {
  /** Bytes handed to the socket so far. */
  sent: number;
  /** The last write was refused (the socket's buffer is full) and no 'drain' came yet. */
  blocked: boolean;
  closedAt?: number;
}

/** An upstream that streams `length` bytes per request, writing only when its socket takes more. */
async function startStreamUpstream(length: number): Promise<{ port: number; streams: Map<SlowMode, Generated>; close(): Promise<void> }> {
  const streams = new Map<SlowMode, Generated>();
  const sockets = new Set<net.Socket>();
  const sseBlock = chunk(token('y'.repeat(4000)).repeat(16));
  const jsonBlock = chunk(`"${'z'.repeat(64 * 1024 - 2)}",`);
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    let buf = '';
    socket.on('data', (d: Buffer) => {
      if (buf === 'answered') return;
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      const requestLine = buf.slice(0, buf.indexOf('\r\n'));
      buf = 'answered';
      if (requestLine.startsWith('GET /health')) {
        socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}');
        return;
      }
      const mode: SlowMode = requestLine.includes('/v1/chat/completions') ? 'sse' : 'verbatim';
      const g: Generated = { sent: 0, blocked: false };
      streams.set(mode, g);
      socket.on('close', () => (g.closedAt = performance.now()));
      const first =
        mode === 'sse'
          ? Buffer.concat([SSE_HEAD, chunk(ROLE), chunk(token('Hello'))])
          : Buffer.concat([head(200, 'OK', [['Content-Type', 'application/json'], ['Transfer-Encoding', 'chunked']]), chunk('[')]);
      const block = mode === 'sse' ? sseBlock : jsonBlock;
      const pump = (): void => {
        g.blocked = false;
        // bounded by the nominal length; in practice by backpressure long before it
        for (let i = 0; i < length / block.length && g.sent < length && !socket.destroyed; i++) {
          g.sent += block.length;
          if (!socket.write(block)) {
            g.blocked = true;
            socket.once('drain', pump);
            return;
          }
        }
      };
      g.sent += first.length;
      socket.write(first);
      pump();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    streams,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export interface SlowClientResult {
  mode: SlowMode;
  /** What the upstream would send if nothing held it back. */
  streamBytes: number;
  readMs: number;
  clientBytes: number;
  /** Upstream bytes sent after 1 s of slow reading, and at the end. */
  upstreamSent: { at1s: number; end: number };
  /** The upstream's last write was refused and still waits for 'drain': its writes back up. */
  upstreamBlocked: boolean;
  /** From the client leaving to the upstream connection closing; undefined if it did not within 2 s. */
  upstreamClosedMs: number | undefined;
}

export interface SlowRun {
  results: SlowClientResult[];
  /** The proxy process (a child, so nothing else counts): at rest, after 1 s of slow reading, peak, end. */
  proxyRss: { start: number; at1s: number; peak: number; end: number };
  ms: number;
}

/** A raw client reading exactly one byte per elapsed millisecond, for `readMs`. */
function slowRead(port: number, mode: SlowMode, readMs: number): { done: Promise<number>; leftAt: () => number } {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  socket.pause();
  const path = mode === 'sse' ? '/v1/chat/completions' : '/v1/completions';
  socket.write(`POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"stream":true}`);
  let leftAt = 0;
  const done = new Promise<number>((resolve) => {
    const started = performance.now();
    let got = 0;
    const timer = setInterval(() => {
      const elapsed = performance.now() - started;
      // one byte per millisecond, whatever the timer's real period
      for (let i = 0; i < 100 && got < Math.min(elapsed, readMs); i++) {
        const byte = socket.read(1) as Buffer | null;
        if (byte === null) break;
        got += byte.length;
      }
      if (elapsed >= readMs) {
        clearInterval(timer);
        leftAt = performance.now();
        socket.destroy();
        resolve(got);
      }
    }, 1);
  });
  return { done, leftAt: () => leftAt };
}

export async function runSlowClient(opts: { readMs: number; streamBytes?: number }): Promise<SlowRun> {
  const started = performance.now();
  const streamBytes = opts.streamBytes ?? 1024 * MB;
  const upstream = await startStreamUpstream(streamBytes);
  const proxy = await startProxyCli(['--upstream', `http://127.0.0.1:${upstream.port}`, '--health-interval-ms', '600000']);
  const pid = proxy.child.pid ?? 0;
  try {
    await settle(() => proxy.logs.some((l) => l.msg === 'upstream health changed'), 3000);
    const rssStart = rssBytes(pid);
    const port = Number(new URL(proxy.url).port);
    const modes: SlowMode[] = ['sse', 'verbatim'];
    const readers = modes.map((mode) => ({ mode, reader: slowRead(port, mode, opts.readMs) }));
    let peak = rssStart;
    let at1s = 0;
    const sentAt1s = new Map<SlowMode, number>();
    const t0 = performance.now();
    // samples until the readers are done; bounded by count and by time
    for (let i = 0; i < Math.ceil(opts.readMs / 100) + 10 && performance.now() - t0 < opts.readMs + 1000; i++) {
      await sleep(100);
      const rss = rssBytes(pid);
      peak = Math.max(peak, rss);
      if (at1s === 0 && performance.now() - t0 >= 1000) {
        at1s = rss;
        for (const m of modes) sentAt1s.set(m, upstream.streams.get(m)?.sent ?? 0);
      }
    }
    const blockedAtEnd = new Map(modes.map((m) => [m, upstream.streams.get(m)?.blocked ?? false]));
    const sentAtEnd = new Map(modes.map((m) => [m, upstream.streams.get(m)?.sent ?? 0]));
    const rssEnd = rssBytes(pid);
    const results: SlowClientResult[] = [];
    for (const { mode, reader } of readers) {
      const clientBytes = (await within(reader.done, 5000)).timedOut ? -1 : await reader.done;
      const g = upstream.streams.get(mode);
      await settle(() => g?.closedAt !== undefined, 2000);
      results.push({
        mode,
        streamBytes,
        readMs: opts.readMs,
        clientBytes,
        upstreamSent: { at1s: sentAt1s.get(mode) ?? 0, end: sentAtEnd.get(mode) ?? 0 },
        upstreamBlocked: blockedAtEnd.get(mode) ?? false,
        upstreamClosedMs: g?.closedAt !== undefined ? Math.round(g.closedAt - reader.leftAt()) : undefined,
      });
    }
    return { results, proxyRss: { start: rssStart, at1s, peak, end: rssEnd }, ms: Math.round(performance.now() - started) };
  } finally {
    await proxy.stop();
    await upstream.close();
  }
}
