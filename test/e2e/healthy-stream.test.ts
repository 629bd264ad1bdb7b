// A healthy stream must come through the proxy exactly as llama-server sent it: the guard may hold the
// first events, but never change a byte.
import t from 'tap';
import OpenAI from 'openai';
import { collect, normalise, post, sdk, sseData, startStack } from '../helpers/e2e.js';
import { startProxyCli } from '../helpers/proxy.js';

// Greedy sampling, a fixed seed and no prompt cache make two runs of one request compute the same tokens.
const SAMPLING = { seed: 42, temperature: 0, cache_prompt: false, max_tokens: 16 };
const CHAT = { model: 'tiny', messages: [{ role: 'user' as const, content: 'hello' }], stream: true as const, ...SAMPLING };
const COMPLETION = { model: 'tiny', prompt: 'hello', stream: true as const, ...SAMPLING };

function chatText(data: string[]): string {
  return data
    .filter((d) => d !== '[DONE]')
    .map((d) => (JSON.parse(d) as OpenAI.ChatCompletionChunk).choices[0]?.delta.content ?? '')
    .join('');
}

function completionText(data: string[]): string {
  return data
    .filter((d) => d !== '[DONE]')
    .map((d) => (JSON.parse(d) as OpenAI.Completion).choices[0]?.text ?? '')
    .join('');
}

t.test('healthy streams are relayed byte for byte', async (t) => {
  const stack = await startStack();
  t.teardown(() => stack.stop());

  for (const [path, body, text] of [
    ['/v1/chat/completions', CHAT, chatText],
    ['/v1/completions', COMPLETION, completionText],
  ] as const) {
    await t.test(path, async (t) => {
      const direct = await post(stack.llama.url, path, body);
      const directBody = await direct.text();
      const proxied = await post(stack.proxy.url, path, body);
      const proxiedBody = await proxied.text();

      t.equal(direct.status, 200);
      t.equal(proxied.status, 200);
      t.equal(proxied.headers.get('content-type'), 'text/event-stream');
      t.equal(proxied.headers.get('x-accel-buffering'), 'no');
      t.equal(proxied.headers.get('cache-control'), 'no-cache');

      const data = sseData(directBody);
      t.equal(data.at(-1), '[DONE]', 'llama-server finished the stream');
      const content = text(data);
      t.ok(content.length > 0, `llama-server streamed content: ${JSON.stringify(content)}`);
      t.equal(normalise(proxiedBody), normalise(directBody), 'same bytes apart from id, created, timings');
      t.not(proxiedBody, '', 'the proxy sent a body');
    });
  }

  await t.test('the SDK yields the same content through the proxy', async (t) => {
    const directChat = text(await post(stack.llama.url, '/v1/chat/completions', CHAT), chatText);
    const chat = await collect(() => stack.client.chat.completions.create(CHAT));
    t.equal(chat.error, undefined, 'no error raised');
    t.equal(chat.chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), await directChat);
    t.equal(chat.chunks.at(-1)?.choices[0]?.finish_reason, 'length');

    const directCompletion = text(await post(stack.llama.url, '/v1/completions', COMPLETION), completionText);
    const completion = await collect(() => stack.client.completions.create(COMPLETION));
    t.equal(completion.error, undefined, 'no error raised');
    t.equal(completion.chunks.map((c) => c.choices[0]?.text ?? '').join(''), await directCompletion);
  });
});

async function text(res: Response, extract: (data: string[]) => string): Promise<string> {
  return extract(sseData(await res.text()));
}

t.test('a hold of a few bytes (maxHoldBytes 1 and 16) still relays healthy streams byte for byte', async (t) => {
  // The hold's bound must not bound the window the stream's last event is read from: it once did, and every
  // healthy stream behind such a proxy ended with an error frame.
  const stack = await startStack();
  t.teardown(() => stack.stop());
  for (const maxHold of ['1', '16']) {
    await t.test(`--max-hold-bytes ${maxHold}`, async (t) => {
      const proxy = await startProxyCli(['--upstream', stack.llama.url, '--max-hold-bytes', maxHold]);
      t.teardown(() => proxy.stop());
      const directBody = await (await post(stack.llama.url, '/v1/chat/completions', CHAT)).text();
      const proxiedBody = await (await post(proxy.url, '/v1/chat/completions', CHAT)).text();
      t.equal(sseData(directBody).at(-1), '[DONE]', 'llama-server finished the stream');
      t.equal(normalise(proxiedBody), normalise(directBody), 'same bytes apart from id, created, timings: no error frame');
      const chat = await collect(() => sdk(proxy.url).chat.completions.create(CHAT));
      t.equal(chat.error, undefined, 'the SDK raises nothing');
      t.equal(chat.chunks.at(-1)?.choices[0]?.finish_reason, 'length');
    });
  }
});
