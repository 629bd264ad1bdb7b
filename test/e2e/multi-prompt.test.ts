// A multi-prompt /v1/completions whose second prompt is too long: llama-server streams the first
// prompt's answer, then reports the second one's error in-band. By then the proxy has committed the 200
// (there was output), so what it owes the client is that error frame, intact, as the stream's end.
import t from 'tap';
import OpenAI from 'openai';
import { collect, LONG_PROMPT, normalise, post, sseData, startStack } from '../helpers/e2e.js';

const REQUEST = {
  model: 'tiny',
  prompt: ['hello', LONG_PROMPT],
  max_tokens: 8,
  stream: true as const,
  seed: 42,
  temperature: 0,
  cache_prompt: false,
};

const BACK_TO_BACK = 100;

interface ErrorEvent {
  error: { code: number; message: string; type: string; n_prompt_tokens: number; n_ctx: number };
}

t.test('multi-prompt, second prompt too long', async (t) => {
  const stack = await startStack(); // -c 256 -np 1
  t.teardown(() => stack.stop());

  const direct = await post(stack.llama.url, '/v1/completions', REQUEST);
  const directBody = await direct.text();
  t.equal(direct.status, 200, 'directly: 200');
  const data = sseData(directBody);
  const last = JSON.parse(data.at(-1) ?? '{}') as ErrorEvent;
  t.match(last.error, { code: 400, type: 'exceed_context_size_error', n_ctx: 256 });
  const firstPrompt = data.slice(0, -1).map((d) => JSON.parse(d) as OpenAI.Completion);
  t.ok(firstPrompt.length > 0, `${firstPrompt.length} events for the first prompt before the error`);
  t.equal(firstPrompt.at(-1)?.choices[0]?.finish_reason, 'length', 'the first prompt finished');
  t.notOk(data.includes('[DONE]'), 'no [DONE]');
  const message = last.error.message;
  t.match(message, /^request \(\d+ tokens\) exceeds the available context size \(256 tokens\), try increasing it$/);

  await t.test('through the proxy, raw', async (t) => {
    const res = await post(stack.proxy.url, '/v1/completions', REQUEST);
    t.equal(res.status, 200, 'the stream had started');
    t.equal(res.headers.get('content-type'), 'text/event-stream');
    const body = await res.text();
    t.equal(normalise(body), normalise(directBody), 'the same events, the error frame included');
    t.ok(body.endsWith(`data: ${data.at(-1) ?? ''}\n\n`), 'the error frame is the last event');
  });

  await t.test('through the proxy, SDK', async (t) => {
    const sdk = await collect(() => stack.client.completions.create(REQUEST));
    t.equal(sdk.chunks.length, firstPrompt.length, 'the first prompt\'s chunks are yielded');
    t.equal(sdk.chunks.map((c) => c.choices[0]?.text ?? '').join(''), firstPrompt.map((c) => c.choices[0]?.text ?? '').join(''));
    t.type(sdk.error, OpenAI.APIError);
    const err = sdk.error as InstanceType<typeof OpenAI.APIError>;
    t.equal(err.status, undefined, 'raised from inside the stream, so no status');
    t.equal(err.message, message);
    t.equal(err.type, 'exceed_context_size_error');
    t.equal(err.code, 400);
  });

  // llama-server closes the connection a few ms after such a stream, without saying so in a header; a
  // request that follows at once must still reach it and get the same answer, not a 502 from the proxy.
  // Raw fetch: the SDK's own overhead leaves enough time for the close to land first.
  await t.test('back-to-back, every request gets the same answer', async (t) => {
    const errorFrame = `data: ${data.at(-1) ?? ''}\n\n`;
    const outcomes = new Map<string, number>();
    for (let i = 0; i < BACK_TO_BACK; i++) {
      const res = await post(stack.proxy.url, '/v1/completions', REQUEST);
      const body = await res.text();
      const seen = res.status === 200 && body.endsWith(errorFrame) ? '200, ending with the error frame' : `${res.status} ${body.slice(0, 200)}`;
      outcomes.set(seen, (outcomes.get(seen) ?? 0) + 1);
    }
    t.same(Object.fromEntries(outcomes), { '200, ending with the error frame': BACK_TO_BACK });
  });
});
