// Everything that is not a held stream passes through unchanged: other routes and methods, non-stream
// answers, upstream errors, large and non-UTF-8 bodies; hop-by-hop headers stay on their own hop.
import t from 'tap';
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { startFakeUpstream, type RawResponsePlan } from '../helpers/fake-upstream.js';
import { startProxy } from '../helpers/proxy.js';

let plan: RawResponsePlan | undefined;
const upstream = await startFakeUpstream({ onRequest: () => plan });
const proxy = await startProxy({ upstream: upstream.url });
t.teardown(async () => {
  await proxy.stop();
  await upstream.close();
});

function raw(head: string, body: Buffer | string = ''): RawResponsePlan {
  return { raw: [Buffer.from(head.replace(/\n/g, '\r\n') + '\r\n'), Buffer.from(body)] };
}

function send(method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(proxy.url + path, { method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

t.test('other routes and methods go through untouched, with hop-by-hop headers removed both ways', async (t) => {
  plan = raw(
    'HTTP/1.1 200 OK\nContent-Type: application/json\nConnection: keep-alive, X-Upstream-Hop\nX-Upstream-Hop: secret\nX-Kept: yes\nContent-Length: 15\n',
    '{"status":"ok"}',
  );
  for (const [method, path] of [
    ['GET', '/health'],
    ['GET', '/slots?fail_on_no_slot=1'],
    ['GET', '/v1/chat/completions'],
    ['POST', '/tokenize'],
  ] as const) {
    const res = await send(method, path, { Connection: 'X-Client-Hop', 'X-Client-Hop': 'no', 'X-End': 'yes', 'Content-Type': 'application/json' }, method === 'POST' ? Buffer.from('{"content":"hi"}') : undefined);
    t.equal(res.status, 200, `${method} ${path}`);
    t.equal(res.body.toString(), '{"status":"ok"}');
    t.equal(res.headers['x-kept'], 'yes');
    t.equal(res.headers['x-upstream-hop'], undefined, 'a header named in Connection does not reach the client');
    const seen = upstream.requests[upstream.requests.length - 1]!;
    t.equal(seen.method, method);
    t.equal(seen.path, path, 'path and query as sent');
    t.equal(seen.headers['x-end'], 'yes');
    t.equal(seen.headers['x-client-hop'], undefined, 'a header named in Connection does not reach llama-server');
    t.ok(seen.headers['x-forwarded-for'], 'X-Forwarded-For');
  }
});

t.test('guarded routes: non-stream answers and upstream errors are relayed unchanged', async (t) => {
  const cases = [
    ['HTTP/1.1 200 OK\nContent-Type: application/json; charset=utf-8\nContent-Length: 11\n', '{"id":"ok"}'],
    ['HTTP/1.1 400 Bad Request\nContent-Type: application/json; charset=utf-8\nContent-Length: 15\nConnection: close\n', '{"error":"bad"}'],
    ['HTTP/1.1 401 Unauthorized\nContent-Type: application/json; charset=utf-8\nContent-Length: 80\n', '{"error":{"message":"Invalid API Key","type":"authentication_error","code":401}}'],
    ['HTTP/1.1 503 Service Unavailable\nContent-Type: application/json; charset=utf-8\nContent-Length: 75\n', '{"error":{"message":"Loading model","type":"unavailable_error","code":503}}'],
  ] as const;
  for (const [head, body] of cases) {
    plan = raw(head, body);
    const res = await send('POST', '/v1/chat/completions', { 'content-type': 'application/json' }, Buffer.from('{"stream":true}'));
    t.equal(res.status, Number(head.split(' ')[1]), head.slice(0, head.indexOf('\n')));
    t.equal(res.body.toString(), body);
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8');
    t.equal(res.headers['x-status-rewritten'], undefined);
    t.equal(upstream.requests[upstream.requests.length - 1]!.headers['x-forwarded-proto'], 'http');
  }
});

t.test('a large request body arrives byte for byte, streamed both ways', async (t) => {
  plan = raw('HTTP/1.1 200 OK\nContent-Type: application/json\nContent-Length: 2\n', '{}');
  const body = randomBytes(8 * 1024 * 1024);
  const res = await send('POST', '/v1/chat/completions', { 'content-type': 'application/json' }, body);
  t.equal(res.status, 200);
  t.ok(upstream.requests[upstream.requests.length - 1]!.body.equals(body), '8 MiB identical at the upstream');
});

t.test('non-UTF-8 bytes survive in both directions, in a held stream too', async (t) => {
  const invalid = Buffer.from([0x64, 0x61, 0x74, 0x61, 0x3a, 0x20, 0xff, 0xfe, 0xc3, 0x28, 0x0a, 0x0a]); // "data: " + invalid UTF-8
  const stream = Buffer.concat([invalid, Buffer.from('data: [DONE]\n\n')]);
  plan = {
    raw: [
      Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n'),
      Buffer.from(`${stream.length.toString(16)}\r\n`),
      stream,
      Buffer.from('\r\n0\r\n\r\n'),
    ],
  };
  const requestBody = Buffer.from([0x7b, 0x22, 0x78, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d]); // {"x":"\xc0\xaf"}
  const res = await send('POST', '/v1/chat/completions', { 'content-type': 'application/json' }, requestBody);
  t.equal(res.status, 200);
  t.ok(res.body.equals(stream), 'response bytes unchanged');
  t.ok(upstream.requests[upstream.requests.length - 1]!.body.equals(requestBody), 'request bytes unchanged');
});
