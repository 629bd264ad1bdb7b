/**
 * The baseline: the least a Node reverse proxy can do. http.request with a keep-alive agent, the request
 * piped up, the response piped down, no header hygiene, no reading of the body. Whatever
 * llama-status-proxy costs above this is the price of its guard.
 *
 * One thing it must do to work at all in front of llama-server: not reuse the connection of an event
 * stream, which the server closes right after it (bench/upstream.ts). With reuse, about half of
 * back-to-back streams went out on a closing socket and failed.
 *
 * Usage: node dist/bench/pipe-proxy.js <upstream-url>   (port from BENCH_PORT, else a free one; reported on IPC)
 */
import http from 'node:http';
import { listenAndReport } from './report-port.js';

const upstream = new URL(process.argv[2] ?? 'http://127.0.0.1:8081');
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

const server = http.createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
  const up = http.request(
    {
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent,
    },
    (upRes) => {
      if (upRes.headers['content-type']?.startsWith('text/event-stream')) up.shouldKeepAlive = false;
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    },
  );
  up.on('error', () => {
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  });
  // A client that leaves must not keep the upstream generating.
  res.on('close', () => {
    if (!res.writableFinished) up.destroy();
  });
  req.pipe(up);
});
server.timeout = 0;

listenAndReport(server, process.env.BENCH_PORT);
