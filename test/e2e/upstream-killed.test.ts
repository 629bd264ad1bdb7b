// llama-server dies mid-stream (SIGKILL: the connection just ends, REPORT §6). A client must learn that
// the answer is incomplete: the proxy ends the stream with an error frame instead of a silent stop.
import t from 'tap';
import OpenAI from 'openai';
import { LONG_GENERATION, longContextModel, post, sseData, startStack } from '../helpers/e2e.js';

const REQUEST = LONG_GENERATION;
const CHUNKS_BEFORE_KILL = 5;
const BROKE_OFF =
  '{"error":{"code":"upstream_connection_lost","message":"the stream from llama-server broke off: llama-server closed the connection unexpectedly","type":"server_error"}}';
const MAX_READS = 100_000;

t.test('llama-server killed mid-stream', async (t) => {
  // Two slots: the SDK stream and the raw stream are both in flight when the one process dies.
  const stack = await startStack({ model: longContextModel(), args: ['-c', '32768', '-np', '2'] });
  t.teardown(() => stack.stop());

  let readyToKill: () => void = () => undefined;
  const bothStarted = new Promise<void>((resolve) => {
    let started = 0;
    readyToKill = () => {
      if (++started === 2) resolve();
    };
  });
  void bothStarted.then(() => process.kill(-stack.llama.pid, 'SIGKILL'));

  const sdkRun = (async () => {
    let received = 0;
    try {
      const stream = await stack.client.chat.completions.create(REQUEST);
      for await (const _chunk of stream) {
        if (++received === CHUNKS_BEFORE_KILL) readyToKill();
        if (received > MAX_READS) break;
      }
      return { received, error: undefined };
    } catch (error) {
      return { received, error };
    }
  })();

  const rawRun = (async () => {
    const res = await post(stack.proxy.url, '/v1/chat/completions', REQUEST);
    const reader = res.body?.getReader();
    if (reader === undefined) throw new Error('no body');
    const decoder = new TextDecoder();
    let text = '';
    let signalled = false;
    for (let i = 0; i < MAX_READS; i++) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (!signalled && sseData(text).length >= CHUNKS_BEFORE_KILL) {
        signalled = true;
        readyToKill();
      }
    }
    return { status: res.status, text };
  })();

  const [sdk, raw] = await Promise.all([sdkRun, rawRun]);

  await t.test('the SDK raises', async (t) => {
    t.ok(sdk.received >= CHUNKS_BEFORE_KILL, `${sdk.received} chunks before the end`);
    t.type(sdk.error, OpenAI.APIError);
    const err = sdk.error as InstanceType<typeof OpenAI.APIError>;
    t.equal(err.status, undefined, 'raised from inside the stream');
    t.equal(err.message, 'the stream from llama-server broke off: llama-server closed the connection unexpectedly');
    t.equal(err.code, 'upstream_connection_lost');
  });

  await t.test('raw: the last event is an error frame', async (t) => {
    t.equal(raw.status, 200);
    const data = sseData(raw.text);
    t.ok(data.length > CHUNKS_BEFORE_KILL, `${data.length} events`);
    t.notOk(data.includes('[DONE]'), 'not a normal end');
    t.equal(data.at(-1), BROKE_OFF);
    t.ok(raw.text.endsWith('}\n\n'), 'the frame is complete');
    t.notOk(
      data.slice(0, -1).some((d) => d.includes('"error"')),
      'only the last event is an error',
    );
  });

  const line = await stack.proxy.waitForLog((l) => l.msg === 'request' && l.midStreamError !== undefined, 5_000);
  t.equal(line.status, 200);
});
