/**
 * http-proxy-3 as a whole proxy, configured as the project's pass-through uses it (keep-alive agent,
 * changeOrigin, xfwd): to see whether routing streams through it would be cheaper than the guard's
 * undici dispatch. Not a default target; ask for it with --targets.
 *
 * Usage: node dist/bench/http-proxy-3-proxy.js <upstream-url>   (port on IPC)
 */
import http from 'node:http';
import { listenAndReport } from './report-port.js';
import { createProxyServer } from 'http-proxy-3';

const upstream = new URL(process.argv[2] ?? 'http://127.0.0.1:8081');
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const proxy = createProxyServer({ target: upstream.origin, agent, changeOrigin: true, xfwd: true });
// As in pipe-proxy.ts: an event stream's socket is not reused, since llama-server closes it right after.
proxy.on('proxyReq', (proxyReq) => {
  proxyReq.once('response', (proxyRes: http.IncomingMessage) => {
    if (proxyRes.headers['content-type']?.startsWith('text/event-stream')) proxyReq.shouldKeepAlive = false;
  });
});

const server = http.createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) => {
  proxy.web(req, res, {}, () => {
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  });
});
server.timeout = 0;

listenAndReport(server, process.env.BENCH_PORT);
