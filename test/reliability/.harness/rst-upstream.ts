// An upstream that ends each exchange with a TCP reset (RST), which the fake upstream cannot send: its
// 'destroy' closes with a FIN. Both must end the same way for the client.
import net from 'node:net';
import { listenOnLoopback } from '../../helpers/fake-upstream.js';

export interface RstUpstream {
  url: string;
  port: number;
  close(): Promise<void>;
}

const HEALTHY = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{"status":"ok"}';

/** `plan(headers)` gives the bytes to write before the reset. GET /health is answered 200. */
export async function startRstUpstream(plan: (headers: Record<string, string>) => Buffer[]): Promise<RstUpstream> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let answered = false;
    socket.on('data', (data: Buffer) => {
      if (answered) return;
      buf = Buffer.concat([buf, data]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      // Reset only once the whole request is in: an unread body would make any close a reset anyway.
      if (buf.length < end + 4 + Number(headers['content-length'] ?? 0)) return;
      answered = true;
      if (lines[0]?.startsWith('GET /health')) {
        socket.end(HEALTHY);
        return;
      }
      const writes = plan(headers);
      for (const w of writes) socket.write(w);
      socket.write(Buffer.alloc(0), () => socket.resetAndDestroy());
    });
  });
  const port = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A loopback port with nothing listening on it: connecting is refused. */
export async function deadPort(): Promise<number> {
  const server = net.createServer();
  const port = await listenOnLoopback(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
