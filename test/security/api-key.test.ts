// The optional API key: required everywhere but the probes, accepted in both SDKs' headers, never logged.
import t from 'tap';
import OpenAI from 'openai';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeUpstream } from '../helpers/fake-upstream.js';
import { startProxy } from '../helpers/proxy.js';

const KEY = 'sk-test-7b1f0c9e2d';
const keyFile = join(mkdtempSync(join(tmpdir(), 'lsp-key-')), 'key');
writeFileSync(keyFile, `${KEY}\n`);

const upstream = await startFakeUpstream();
const proxy = await startProxy({ upstream: upstream.url, apiKeyFile: keyFile });
t.teardown(async () => {
  await proxy.stop();
  await upstream.close();
});

/** Requests that reached llama-server, apart from the readiness probe's GET /health. */
const forwarded = (): number => upstream.requests.filter((r) => r.path !== '/health').length;
const caught = (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (e: unknown) => e);

const chat = (headers: Record<string, string>): Promise<Response> =>
  fetch(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-fixture': 'FX11', ...headers },
    body: '{"stream":true}',
  });

t.test('without the key, or with a wrong one: 401 and a JSON error; nothing reaches llama-server', async (t) => {
  const before = forwarded();
  const attempts: Array<Record<string, string>> = [{}, { authorization: 'Bearer nope' }, { 'x-api-key': 'nope' }, { authorization: `Bearer ${KEY}x` }];
  for (const headers of attempts) {
    const res = await chat(headers);
    t.equal(res.status, 401, JSON.stringify(headers));
    t.equal(res.headers.get('www-authenticate'), 'Bearer');
    t.same(await res.json(), { error: { code: 'invalid_api_key', message: 'invalid or missing API key', type: 'authentication_error' } });
  }
  const messages = await fetch(`${proxy.url}/v1/messages`, { method: 'POST', body: '{}' });
  t.equal(messages.status, 401);
  t.same(await messages.json(), { type: 'error', error: { type: 'authentication_error', message: 'invalid or missing API key' } }, "Anthropic's envelope");
  const metrics = await fetch(`${proxy.url}/-/metrics`);
  t.equal(metrics.status, 401, '/-/metrics needs the key too');
  await metrics.arrayBuffer();
  t.equal(forwarded(), before);
});

t.test('Bearer and x-api-key both work, from the file; probes need no key', async (t) => {
  const good: Array<Record<string, string>> = [{ authorization: `Bearer ${KEY}` }, { 'x-api-key': KEY }];
  for (const headers of good) {
    const res = await chat(headers);
    t.equal(res.status, 200, Object.keys(headers).join());
    await res.arrayBuffer();
  }
  t.equal((await fetch(`${proxy.url}/-/live`)).status, 200);
  t.not((await fetch(`${proxy.url}/-/ready`)).status, 401);
});

t.test('the official SDK: AuthenticationError with a wrong key, content with the right one', async (t) => {
  const wrong = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
  t.type(await caught(wrong.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })), OpenAI.AuthenticationError);
  const right = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: KEY, maxRetries: 0, defaultHeaders: { 'x-fixture': 'FX12' } });
  const stream = await right.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true });
  let content = '';
  const err = await caught(
    (async () => {
      for await (const c of stream) content += c.choices[0]?.delta?.content ?? '';
    })(),
  );
  t.type(err, OpenAI.APIError);
  t.match((err as Error).message, 'Context size has been exceeded.');
  t.equal(content, 'Hello world');
});

t.test('the key appears in no log line', async (t) => {
  t.ok(proxy.logs.length > 5);
  t.notMatch(JSON.stringify(proxy.logs), KEY);
});
