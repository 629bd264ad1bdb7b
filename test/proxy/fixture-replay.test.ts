// Every fixture of the reference catalogue, replayed byte-exact by a fake upstream, through the proxy:
// the status, headers and body bytes the client receives, and what the official openai SDK does with
// them (a typed status error before the commit, an APIError mid-stream, content otherwise).
import t from 'tap';
import OpenAI from 'openai';
import { ALL_FIXTURES } from '../fixtures/catalogue.js';
import type { UpstreamFixture } from '../fixtures/types.js';
import { sseBody, startFakeUpstream } from '../helpers/fake-upstream.js';
import { startProxy } from '../helpers/proxy.js';

/** The bare error object text of a fixture's frame, as the upstream wrote it. */
const wrap = (bare: string): string => `{"error":${bare}}`;
const GRAMMAR = '{"code":400,"message":"Failed to parse grammar","type":"invalid_request_error"}';
const CTX_OLD =
  '{"code":400,"message":"the request exceeds the available context size. try increasing the context size or enable context shift","type":"invalid_request_error"}';
const KV = '{"code":500,"message":"Context size has been exceeded.","type":"server_error"}';
const PEG = '{"code":500,"message":"The model produced output that does not match the expected peg-native format","type":"server_error"}';
const IK_KV = '{"code":500,"message":"Input prompt is too big compared to KV size. Please try increasing KV size.","type":"server_error"}';
const anthropic = (message: string): string => JSON.stringify({ type: 'error', error: { type: 'api_error', message } });
const BROKE_OFF =
  'data: {"error":{"code":"upstream_connection_lost","message":"the stream from llama-server broke off: llama-server closed the connection unexpectedly","type":"server_error"}}\n\n';

type Expect =
  /** The in-band error became a real status; the body is exactly this. */
  | { mode: 'rewritten'; status: number; body: string }
  /** The proxy answered itself (not an upstream error). */
  | { mode: 'own'; status: number; body: string }
  /** 200, and the upstream's body byte for byte, plus `appended` when the stream broke off. */
  | { mode: 'relayed'; appended?: string }
  /** Not a held stream: status and body exactly as the upstream sent them. */
  | { mode: 'verbatim' };

const EXPECT: Record<string, Expect> = {
  FX01: {
    mode: 'own',
    status: 502,
    body: '{"error":{"code":"empty_stream","message":"llama-server ended the stream without sending any output or error","type":"server_error"}}',
  },
  FX02: { mode: 'rewritten', status: 500, body: wrap('{"code":500,"message":"internal_error","type":"server_error"}') },
  FX03: { mode: 'rewritten', status: 400, body: wrap(GRAMMAR) },
  FX04: { mode: 'rewritten', status: 400, body: wrap(GRAMMAR) },
  FX05: { mode: 'rewritten', status: 400, body: wrap(CTX_OLD) },
  FX06: { mode: 'rewritten', status: 400, body: wrap(CTX_OLD) },
  FX07: { mode: 'rewritten', status: 400, body: wrap(CTX_OLD) },
  FX08: {
    mode: 'rewritten',
    status: 400,
    body: wrap(
      '{"code":400,"message":"the request exceeds the available context size. try increasing the context size or enable context shift","type":"exceed_context_size_error","n_prompt_tokens":14429,"n_ctx":8192}',
    ),
  },
  FX09: {
    mode: 'rewritten',
    status: 400,
    body: '{"error":{"code":400,"message":"the request exceeds the available context size. try increasing the context size or enable context shift","type":"exceed_context_size_error","n_prompt_tokens":14429,"n_ctx":8192}}',
  },
  FX10: { mode: 'verbatim' },
  FX11: { mode: 'relayed' },
  FX12: { mode: 'relayed' },
  FX13: { mode: 'verbatim' },
  FX14: { mode: 'rewritten', status: 500, body: wrap(KV) },
  FX15: { mode: 'rewritten', status: 500, body: anthropic('Context size has been exceeded.') },
  FX16: { mode: 'relayed' },
  FX17a: { mode: 'verbatim' },
  FX17b: { mode: 'verbatim' },
  FX17c: { mode: 'verbatim' },
  FX17d: { mode: 'verbatim' },
  FX17e: { mode: 'verbatim' },
  FX18a: { mode: 'verbatim' },
  FX18b: { mode: 'verbatim' },
  FX19: { mode: 'verbatim' },
  'B11669-MP2-completion': { mode: 'relayed' },
  'B11669-MP2-v1completions': { mode: 'relayed' },
  'B11669-KVX-chat': { mode: 'relayed' },
  'B11669-KVX-completion': { mode: 'relayed' },
  'B11669-KVX-v1completions': { mode: 'relayed' },
  'B11669-KVX-messages': { mode: 'relayed' },
  'B11669-KVX-responses': { mode: 'relayed' },
  'B11669-TP-chat': { mode: 'rewritten', status: 500, body: wrap(PEG) },
  'B11669-TP-messages': {
    mode: 'rewritten',
    status: 500,
    body: anthropic('The model produced output that does not match the expected peg-native format'),
  },
  'B11669-TP-responses': { mode: 'rewritten', status: 500, body: wrap(PEG) },
  'B11669-SIGKILL-completion': { mode: 'relayed', appended: BROKE_OFF },
  'B11669-SIGTERM-completion': { mode: 'relayed', appended: BROKE_OFF },
  'B11669-SIGTERM-chat': { mode: 'relayed', appended: BROKE_OFF },
  'SGLANG-12081': {
    mode: 'rewritten',
    status: 400,
    body: `{"error":{"object":"error","message":"The input (140012 tokens) is longer than the model's context length (131072 tokens).","type":"BadRequestError","param":null,"code":400}}`,
  },
  'KRONK-862': {
    mode: 'rewritten',
    status: 500,
    body: wrap(
      '{"code":"server_error","message":"start-slot: imc decode: imc: failed to decode extension tokens at pos 16384: unable to process request: the context window is full. Please reduce the input size or increase the context window","type":"server_error"}',
    ),
  },
  'IKLLAMA-error-line': { mode: 'rewritten', status: 500, body: wrap(IK_KV) },
  'IKLLAMA-906-data-bare': { mode: 'rewritten', status: 500, body: wrap(IK_KV) },
  'IKLLAMA-1134-data-error': { mode: 'relayed' },
  'VLLM-data-error-done': { mode: 'relayed' },
};

const upstream = await startFakeUpstream();
const proxy = await startProxy({ upstream: upstream.url, firstEventTimeoutMs: 0 });
t.teardown(async () => {
  await proxy.stop();
  await upstream.close();
});

function requestBody(fx: UpstreamFixture): string | undefined {
  if (fx.method !== 'POST') return undefined;
  if (fx.path.endsWith('/messages')) return '{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi"}],"stream":true}';
  if (fx.path.endsWith('/responses')) return '{"model":"m","input":"hi","stream":true}';
  if (fx.path.includes('chat')) return '{"messages":[{"role":"user","content":"hi"}],"stream":true}';
  return '{"prompt":"hi","stream":true}';
}

async function fetchFixture(fx: UpstreamFixture): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const body = requestBody(fx);
  const res = await fetch(proxy.url + fx.path, {
    method: fx.method,
    headers: { 'x-fixture': fx.id, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body } : {}),
  });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

function fixtureHeader(fx: UpstreamFixture, name: string): string | undefined {
  return fx.headers.find(([k]) => k.toLowerCase() === name)?.[1];
}

t.test('every fixture has an expectation', async (t) => {
  t.same(
    ALL_FIXTURES.map((f) => f.id).filter((id) => !(id in EXPECT)),
    [],
  );
});

for (const fx of ALL_FIXTURES) {
  const want = EXPECT[fx.id];
  if (want === undefined) continue;
  t.test(`${fx.id}: ${fx.title}`, async (t) => {
    const got = await fetchFixture(fx);
    switch (want.mode) {
      case 'rewritten':
      case 'own':
        t.equal(got.status, want.status, 'status');
        t.equal(got.body.toString('utf8'), want.body, 'body');
        t.equal(got.headers.get('content-type'), 'application/json; charset=utf-8');
        t.equal(got.headers.get('content-length'), String(Buffer.byteLength(want.body)));
        t.equal(got.headers.get('x-status-rewritten'), want.mode === 'rewritten' ? 'in-band-error' : null, 'rewritten marker');
        if (want.status === 503) t.ok(got.headers.get('retry-after'));
        break;
      case 'relayed': {
        t.equal(got.status, 200, 'status');
        t.equal(got.headers.get('content-type'), fixtureHeader(fx, 'content-type'));
        t.equal(got.headers.get('x-accel-buffering'), 'no');
        t.equal(got.headers.get('cache-control'), 'no-cache');
        const expected = Buffer.concat([sseBody(fx), Buffer.from(want.appended ?? '')]);
        t.equal(got.body.toString('utf8'), expected.toString('utf8'), 'body: every upstream byte, in order');
        t.ok(got.body.equals(expected), 'byte for byte');
        break;
      }
      case 'verbatim': {
        t.equal(got.status, fx.status, 'status');
        t.equal(got.body.toString('utf8'), sseBody(fx).toString('utf8'), 'body');
        for (const [name, value] of fx.headers) {
          const lower = name.toLowerCase();
          if (['connection', 'keep-alive', 'transfer-encoding'].includes(lower)) continue;
          t.equal(got.headers.get(lower), value, `header ${name}`);
        }
        t.equal(got.headers.get('x-status-rewritten'), null);
        break;
      }
    }
  });
}

// ---- what the official SDK makes of it ------------------------------------------------------------

const client = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'test', maxRetries: 0 });

interface SdkOutcome {
  chunks: number;
  content: string;
  error?: { name: string; status: number | undefined; message: string };
}

async function sdkOutcome(fx: UpstreamFixture): Promise<SdkOutcome | undefined> {
  const headers = { 'x-fixture': fx.id };
  const out: SdkOutcome = { chunks: 0, content: '' };
  try {
    if (fx.path === '/v1/chat/completions') {
      const stream = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true }, { headers });
      for await (const chunk of stream) {
        out.chunks++;
        out.content += chunk.choices[0]?.delta?.content ?? '';
      }
    } else if (fx.path === '/v1/completions') {
      const stream = await client.completions.create({ model: 'm', prompt: 'hi', stream: true }, { headers });
      for await (const chunk of stream) {
        out.chunks++;
        out.content += chunk.choices[0]?.text ?? '';
      }
    } else if (fx.path === '/v1/responses') {
      const stream = await client.responses.create({ model: 'm', input: 'hi', stream: true }, { headers });
      for await (const event of stream) {
        out.chunks++;
        if (event.type === 'response.output_text.delta') out.content += event.delta;
      }
    } else {
      return undefined; // native and Anthropic routes: not the openai SDK's business
    }
  } catch (err) {
    if (!(err instanceof OpenAI.APIError)) throw err;
    out.error = { name: err.constructor.name, status: err.status, message: err.message };
  }
  return out;
}

const STATUS_CLASS: Record<number, string> = {
  400: 'BadRequestError',
  401: 'AuthenticationError',
  500: 'InternalServerError',
  502: 'InternalServerError',
};

t.test('the openai SDK: typed status errors before the stream, APIError mid-stream, never a silent success', async (t) => {
  for (const fx of ALL_FIXTURES) {
    const want = EXPECT[fx.id];
    if (want === undefined) continue;
    const got = await sdkOutcome(fx);
    if (got === undefined) continue;
    const label = `${fx.id} (${fx.path})`;
    if (want.mode === 'rewritten' || want.mode === 'verbatim' || want.mode === 'own') {
      const status = want.mode === 'verbatim' ? fx.status : want.status;
      t.equal(got.error?.name, STATUS_CLASS[status], `${label}: raises ${STATUS_CLASS[status]}`);
      t.equal(got.error?.status, status, `${label}: status ${status}`);
      t.equal(got.chunks, 0, `${label}: before yielding anything`);
    } else {
      // Every relayed stream in the catalogue ends in an error; the client must hear of it.
      t.equal(got.error?.name, 'APIError', `${label}: raises APIError mid-stream`);
      t.equal(got.error?.status, undefined, `${label}: no status: the stream had started`);
      t.ok(got.chunks > 0, `${label}: after yielding the chunks before the error (${got.chunks})`);
    }
  }
});

t.test('#14566 (b5630): directly a silent empty success; through the proxy a BadRequestError', async (t) => {
  const direct = new OpenAI({ baseURL: `${upstream.url}/v1`, apiKey: 'test', maxRetries: 0 });
  const stream = await direct.chat.completions.create(
    { model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true },
    { headers: { 'x-fixture': 'FX06' } },
  );
  let chunks = 0;
  for await (const _ of stream) chunks++;
  t.equal(chunks, 0, 'directly: the SDK yields nothing and reports success');

  const err = await client.chat.completions
    .create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], stream: true }, { headers: { 'x-fixture': 'FX06' } })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  t.type(err, OpenAI.BadRequestError);
  t.match((err as InstanceType<typeof OpenAI.BadRequestError>).message, /exceeds the available context size/);
});

t.test('the request log says what happened', async (t) => {
  const line = await proxy.waitForLog((l) => l.msg === 'request' && l.rewritten === true && l.errorType === 'exceed_context_size_error');
  t.equal(line.status, 400);
  t.equal(line.upstreamStatus, 200);
  t.type(line.decideMs, 'number');
  t.type(line.durationMs, 'number');
});
