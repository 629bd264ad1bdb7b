// Concurrent generations that run the shared KV pool dry (-np 2 -kvu): llama-server fails each one
// mid-stream, in-band. Past the commit point, the client must still see an error, never a quiet end.
import t from 'tap';
import OpenAI from 'openai';
import { collect, post, sleep, sseData, startStack } from '../helpers/e2e.js';

const REQUEST = {
  model: 'tiny',
  messages: [{ role: 'user' as const, content: 'hello' }],
  max_tokens: 250,
  ignore_eos: true,
  stream: true as const,
};
const ERROR_EVENT = '{"error":{"code":500,"message":"Context size has been exceeded.","type":"server_error"}}';
const CONCURRENT = 2;
/** Setup, not an assertion: time for the proxy to hand both requests to the paused llama-server. */
const ARRIVAL_MS = 500;

/**
 * Starts the requests while llama-server is stopped, so that it reads them all at once when it resumes.
 * A generation here takes some 40 ms; requests that merely leave together can still reach llama-server
 * one after the other on a busy machine, and then each runs alone and ends normally.
 */
async function arriveTogether<T>(pid: number, start: () => Array<Promise<T>>): Promise<T[]> {
  process.kill(pid, 'SIGSTOP');
  let all: Promise<T[]>;
  try {
    all = Promise.all(start());
    all.catch(() => undefined); // rejections are handled by the caller, after SIGCONT
    await sleep(ARRIVAL_MS);
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  return all;
}

t.test('KV pool exhausted mid-generation', async (t) => {
  const stack = await startStack({ args: ['-c', '256', '-np', '2', '-kvu'] });
  t.teardown(() => stack.stop());

  await t.test('the SDK raises for every stream', async (t) => {
    const outcomes = await arriveTogether(stack.llama.pid, () =>
      Array.from({ length: CONCURRENT }, () => collect(() => stack.client.chat.completions.create(REQUEST))),
    );
    for (const [i, sdk] of outcomes.entries()) {
      t.ok(sdk.chunks.length > 1, `stream ${i}: ${sdk.chunks.length} chunks before the error`);
      t.type(sdk.error, OpenAI.APIError, `stream ${i} raised`);
      const err = sdk.error as InstanceType<typeof OpenAI.APIError>;
      t.equal(err.message, 'Context size has been exceeded.');
      t.equal(err.status, undefined, 'the 200 was out: the error comes from the stream');
      t.equal(err.code, 500);
    }
  });

  await t.test('raw: the error frame is the last event, without [DONE]', async (t) => {
    const responses = await arriveTogether(stack.llama.pid, () =>
      Array.from({ length: CONCURRENT }, async () => {
        const res = await post(stack.proxy.url, '/v1/chat/completions', REQUEST);
        return { status: res.status, body: await res.text() };
      }),
    );
    for (const [i, res] of responses.entries()) {
      t.equal(res.status, 200);
      const data = sseData(res.body);
      t.equal(data.at(-1), ERROR_EVENT, `stream ${i} ends with llama-server's error`);
      t.notOk(data.includes('[DONE]'));
    }
  });
});
