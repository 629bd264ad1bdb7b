/**
 * How the bench's own servers (fake upstream, pipe proxies) start: on loopback, on BENCH_PORT or a free
 * port, reported to the orchestrator over IPC (or on stdout when run by hand), and gone with it.
 */
import type { AddressInfo, Server } from 'node:net';

export function listenAndReport(server: Server, portFromEnv: string | undefined): void {
  server.listen(Number(portFromEnv ?? 0), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo;
    if (process.send) process.send({ port });
    else process.stdout.write(`${JSON.stringify({ port })}\n`);
  });
  process.on('disconnect', () => process.exit(0));
}
