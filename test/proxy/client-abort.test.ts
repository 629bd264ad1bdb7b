// A client that leaves: the upstream request is closed at once (llama-server then frees its slot, within
// its 1 s poll), whatever phase the exchange was in, and the log says 499.
import t from 'tap';
import { request } from 'node:http';
import { startFakeUpstream } from '../helpers/fake-upstream.js';
import { startProxy } from '../helpers/proxy.js';

const upstream = await startFakeUpstream();
const proxy = await startProxy({ upstream: upstream.url, firstEventTimeoutMs: 0 });
t.teardown(async () => {
  await proxy.stop();
  await upstream.close();
});

/** Sends a streamed chat request, waits until `ready(received)` says so, then destroys the socket. */
function leaveWhen(headers: Record<string, string>, ready: (received: string, gotHeaders: boolean) => boolean): Promise<{ leftAt: number; received: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${proxy.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } });
    let received = '';
    let gotHeaders = false;
    const check = (): void => {
      if (!ready(received, gotHeaders)) return;
      const leftAt = performance.now();
      req.destroy();
      resolve({ leftAt, received });
    };
    req.on('response', (res) => {
      gotHeaders = true;
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        received += d;
        check();
      });
      res.on('error', () => undefined);
      check();
    });
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
    req.end('{"messages":[{"role":"user","content":"hi"}],"stream":true}');
    // While the proxy holds, nothing reaches the client: leave once the upstream has the request.
    void upstream.waitForRequest().then(() => setTimeout(check, 50));
  });
}

t.test('during the hold (upstream sent only the role chunk): upstream closed within 100 ms', async (t) => {
  // B11669-TP-chat's first chunk is the role chunk alone; hanging after it keeps the proxy holding.
  const { leftAt, received } = await leaveWhen({ 'x-fixture': 'B11669-TP-chat', 'x-fixture-hang-after': '1' }, (_r, gotHeaders) => !gotHeaders);
  t.equal(received, '', 'the client had nothing yet');
  const req = upstream.requests[upstream.requests.length - 1]!;
  const closedAt = await upstream.waitForClose(req);
  t.ok(closedAt - leftAt < 100, `upstream closed ${Math.round(closedAt - leftAt)} ms after the client left`);
  const line = await proxy.waitForLog((l) => l.msg === 'request' && l.clientAbort === true);
  t.equal(line.status, 499);
});

t.test('mid-stream: upstream closed within 100 ms', async (t) => {
  const before = proxy.logs.length;
  const { leftAt, received } = await leaveWhen({ 'x-fixture': 'FX11', 'x-fixture-hang-after': '2' }, (r) => r.includes('Hello'));
  t.match(received, /"content":"Hello"/, 'the client had the first token');
  const req = upstream.requests[upstream.requests.length - 1]!;
  const closedAt = await upstream.waitForClose(req);
  t.ok(closedAt - leftAt < 100, `upstream closed ${Math.round(closedAt - leftAt)} ms after the client left`);
  const line = await proxy.waitForLog((l) => proxy.logs.indexOf(l) >= before && l.msg === 'request' && l.clientAbort === true);
  t.equal(line.status, 499);
  t.equal(line.upstreamStatus, 200);
});

t.test('while the upstream has not answered yet', async (t) => {
  const { leftAt } = await leaveWhen({ 'x-fixture': 'FX11', 'x-fixture-hang-after': '0' }, () => true);
  const req = upstream.requests[upstream.requests.length - 1]!;
  const closedAt = await upstream.waitForClose(req);
  t.ok(closedAt - leftAt < 100, `upstream closed ${Math.round(closedAt - leftAt)} ms after the client left`);
});
