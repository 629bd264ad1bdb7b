// llama-server closes its connection after every stream, without saying so, but keeps non-stream ones
// alive. The proxy reuses upstream connections only for requests that do not ask for a stream; mixed
// back-to-back traffic must never land on a socket llama-server is closing (that would be a 502).
import t from 'tap';
import { post, startStack } from '../helpers/e2e.js';

const ROUNDS = 40;
const chat = (stream: boolean): Record<string, unknown> => ({
  model: 'tiny',
  messages: [{ role: 'user', content: 'hi' }],
  max_tokens: 4,
  stream,
});

t.test('streams and non-stream requests back to back: every one answered by llama-server', async (t) => {
  const stack = await startStack();
  t.teardown(() => stack.stop());
  const statuses: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    for (const stream of [true, false, false]) {
      const res = await post(stack.proxy.url, '/v1/chat/completions', chat(stream));
      const body = await res.text();
      statuses.push(res.status);
      if (res.status !== 200) t.fail(`round ${i}, stream ${stream}: ${res.status} ${body}`);
      else if (stream) t.ok(body.endsWith('data: [DONE]\n\n'), `round ${i}: the stream ended with [DONE]`);
      else t.match(JSON.parse(body), { object: 'chat.completion' }, `round ${i}: a completion`);
    }
  }
  t.same(new Set(statuses), new Set([200]), `${statuses.length} requests, all 200`);
});
