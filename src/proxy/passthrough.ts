/**
 * Every route the guard does not hold (health, props, slots, metrics, tokenize, models, the web UI,
 * non-POST methods) goes through http-proxy-3 unchanged: status, end-to-end headers and body.
 */
import { Agent, type IncomingMessage, type ServerResponse, type ClientRequest } from 'node:http';
import { createProxyServer } from 'http-proxy-3';
import { dialectOf } from '../routes.js';
import { ownError } from '../error-response.js';
import { upstreamFailure } from '../errors.js';
import { sendAnswer } from './answer.js';
import { hopByHopNames } from './headers.js';

export type Passthrough = ((req: IncomingMessage, res: ServerResponse) => void) & { close(): void };

export function createPassthrough(target: URL, opts: { headersTimeoutMs: number }): Passthrough {
  const agent = new Agent({ keepAlive: true });
  const proxy = createProxyServer({
    target: target.origin,
    agent,
    changeOrigin: true,
    xfwd: true,
    preserveHeaderKeyCase: true,
    ...(opts.headersTimeoutMs > 0 ? { proxyTimeout: opts.headersTimeoutMs } : {}),
  });

  // http-proxy-3 copies headers as they are; hop-by-hop ones belong to one connection, in both directions.
  // (Node's client sets its own Connection and framing headers for the upstream connection.)
  proxy.on('proxyReq', (proxyReq: ClientRequest, req: IncomingMessage) => {
    for (const name of hopByHopNames(req.rawHeaders)) proxyReq.removeHeader(name);
    proxyReq.removeHeader('expect'); // Node's server has answered 100-continue to the client already
  });
  proxy.on('proxyRes', (proxyRes: IncomingMessage) => {
    for (const name of hopByHopNames(proxyRes.rawHeaders)) delete proxyRes.headers[name];
  });

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    proxy.web(req, res, {}, (err: Error) => {
      const failure = upstreamFailure(err);
      if (res.headersSent) res.destroy();
      else sendAnswer(res, ownError(failure.status, dialectOf(req.url ?? '/'), failure.message, failure.code));
    });
  };
  return Object.assign(handle, {
    close(): void {
      proxy.close();
      agent.destroy();
    },
  });
}
