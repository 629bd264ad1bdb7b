// Bad input at the HTTP level never reaches llama-server: smuggling shapes, oversized headers and bodies,
// slow clients. Each gets a status and a message; the upstream's address never shows.
import t from 'tap';
import { connect } from 'node:net';
import { startFakeUpstream } from '../helpers/fake-upstream.js';
import { startProxy } from '../helpers/proxy.js';

const upstream = await startFakeUpstream();
const proxy = await startProxy({ upstream: upstream.url, maxBodyBytes: 1024 * 1024, clientHeadersTimeoutMs: 500, clientRequestTimeoutMs: 2000 });
t.teardown(async () => {
  await proxy.stop();
  await upstream.close();
});
const port = Number(new URL(proxy.url).port);

/** Writes raw bytes (in pieces, with pauses), returns everything the proxy sends until it closes. */
function rawExchange(pieces: Array<string | Buffer>, pauseMs = 0, limitMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close within ${limitMs} ms; got ${JSON.stringify(got)}`));
    }, limitMs);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (got += d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    void (async () => {
      for (const p of pieces) {
        if (socket.destroyed) return;
        socket.write(p);
        if (pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
      }
    })();
  });
}

/** Requests that reached llama-server, apart from the readiness probe's GET /health. */
const forwarded = (): number => upstream.requests.filter((r) => r.path !== '/health').length;

const statusOf = (response: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);

t.test('request smuggling shapes are rejected with 400 and never forwarded', async (t) => {
  const before = forwarded();
  const cases: Array<[string, string]> = [
    ['Content-Length with Transfer-Encoding', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['two different Content-Lengths', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde'],
    ['obs-fold', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\nContent-Length: 0\r\n\r\n'],
    ['a bad chunk size', 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n'],
  ];
  for (const [name, bytes] of cases) {
    const response = await rawExchange([bytes]);
    t.equal(statusOf(response), 400, name);
    t.match(response, /"message":"malformed HTTP request"/, `${name}: says why`);
  }
  await new Promise((r) => setTimeout(r, 100));
  t.equal(forwarded(), before, 'llama-server saw none of them');
});

t.test('headers over the limit: 431', async (t) => {
  const response = await rawExchange([`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`]);
  t.equal(statusOf(response), 431);
  t.match(response, /request headers too large/);
});

t.test('a slowloris client is cut off by the header timeout', async (t) => {
  const started = performance.now();
  const pieces = ['GET /health HTTP/1.1\r\n', ...Array.from({ length: 40 }, (_, i) => `X-${i}: y\r\n`)];
  const response = await rawExchange(pieces, 100, 5000);
  const took = performance.now() - started;
  t.ok(took < 3000, `closed after ${Math.round(took)} ms (header timeout 500 ms, checked every 500 ms)`);
  t.equal(statusOf(response), 408);
});

t.test('a body over the limit: 413 without reading it', async (t) => {
  const before = forwarded();
  // Declares 10 MiB and sends none of it: the answer cannot have waited for the body.
  const response = await rawExchange(['POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n'], 0, 3000);
  t.equal(statusOf(response), 413);
  t.match(response, /"code":"request_too_large"/);
  t.match(response, /Connection: close/i);
  const chunked = await fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: new Blob([new Uint8Array(2 * 1024 * 1024)]).stream(),
    duplex: 'half',
  } as RequestInit);
  t.equal(chunked.status, 413, 'a chunked body is counted on its way');
  t.match(await chunked.text(), /larger than the limit/);
  t.equal(upstream.requests.filter((r) => r.body.length > 1024 * 1024).length, 0, 'nothing over the limit reached llama-server');
  t.ok(forwarded() - before <= 1, 'the chunked one may have started');
});

t.test("llama-server unreachable: 502, and the upstream's address is not in the answer", async (t) => {
  const dead = await startProxy({ upstream: 'http://127.0.0.1:9' });
  t.teardown(() => dead.stop());
  for (const path of ['/v1/chat/completions', '/health']) {
    const res = await fetch(dead.url + path, { method: path === '/health' ? 'GET' : 'POST', body: path === '/health' ? undefined : '{}' });
    const text = await res.text();
    t.equal(res.status, 502, path);
    t.match(text, /llama-server is unreachable/);
    t.notMatch(text, /127\.0\.0\.1|:9\b/, 'no address');
  }
});
