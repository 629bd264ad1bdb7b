// The seed case (llama.cpp #14566): a streamed request whose prompt does not fit. b11669 answers it with
// a real 400 itself; the proxy must hand that answer over untouched.
import t from 'tap';
import OpenAI from 'openai';
import { collect, LONG_PROMPT, post, startStack } from '../helpers/e2e.js';

const REQUEST = {
  model: 'tiny',
  messages: [{ role: 'user' as const, content: LONG_PROMPT }],
  max_tokens: 16,
  stream: true as const,
};

t.test('a prompt over the context gets a real 400 through the proxy', async (t) => {
  const stack = await startStack(); // -c 256 -np 1
  t.teardown(() => stack.stop());

  const direct = await post(stack.llama.url, '/v1/chat/completions', REQUEST);
  const directBody = await direct.text();
  t.equal(direct.status, 400, 'llama-server itself answers 400');
  const error = (JSON.parse(directBody) as { error: Record<string, unknown> }).error;
  t.match(error, { code: 400, type: 'exceed_context_size_error', n_ctx: 256, n_prompt_tokens: Number });
  t.ok(Number(error.n_prompt_tokens) > 256, `${String(error.n_prompt_tokens)} prompt tokens`);

  const proxied = await post(stack.proxy.url, '/v1/chat/completions', REQUEST);
  t.equal(proxied.status, 400);
  t.equal(proxied.headers.get('content-type'), 'application/json; charset=utf-8');
  t.equal(proxied.headers.get('x-status-rewritten'), null, 'nothing to rewrite: the status was already real');
  t.equal(await proxied.text(), directBody, 'the body is llama-server\'s own, byte for byte');

  const sdk = await collect(() => stack.client.chat.completions.create(REQUEST));
  t.equal(sdk.chunks.length, 0, 'nothing yielded');
  t.type(sdk.error, OpenAI.BadRequestError);
  const err = sdk.error as InstanceType<typeof OpenAI.BadRequestError>;
  t.equal(err.status, 400);
  t.equal(err.type, 'exceed_context_size_error');
  t.equal(err.message, `400 ${String(error.message)}`);
  t.match(err.error, { n_prompt_tokens: error.n_prompt_tokens, n_ctx: 256 });
});
