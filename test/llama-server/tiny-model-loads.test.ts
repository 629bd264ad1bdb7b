import t from 'tap';
import {
  startLlamaServer,
  TOOL_PARSE_ERROR_REQUEST,
  TOOL_PARSE_ERROR_SERVER_ARGS,
} from '../helpers/llama-server.js';

/** The JSON payloads of a stream's `data:` events, in order ("[DONE]" kept as a string). */
async function sseData(res: Response): Promise<unknown[]> {
  const text = await res.text();
  return text
    .split('\n\n')
    .flatMap((event) => event.split('\n').filter((line) => line.startsWith('data: ')))
    .map((line) => line.slice('data: '.length))
    .map((data) => (data === '[DONE]' ? data : (JSON.parse(data) as unknown)));
}

function chatDeltaText(event: unknown): string {
  if (typeof event !== 'object' || event === null || !('choices' in event) || !Array.isArray(event.choices)) return '';
  const choice: unknown = event.choices[0];
  if (typeof choice !== 'object' || choice === null || !('delta' in choice)) return '';
  const delta = choice.delta;
  if (typeof delta !== 'object' || delta === null || !('content' in delta)) return '';
  return typeof delta.content === 'string' ? delta.content : '';
}

t.test('llama-server loads the tiny model and streams tokens', async (t) => {
  const started = Date.now();
  const server = await startLlamaServer({});
  t.teardown(() => server.stop());
  t.ok(Date.now() - started < 10_000, `ready in ${Date.now() - started} ms`);

  const health = await fetch(`${server.url}/health`);
  t.equal(health.status, 200);
  await health.arrayBuffer();

  const chat = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'hello' }], max_tokens: 16, stream: true }),
  });
  t.equal(chat.status, 200);
  t.match(chat.headers.get('content-type'), /text\/event-stream/);
  const events = await sseData(chat);
  t.equal(events[events.length - 1], '[DONE]');
  const text = events.map(chatDeltaText).join('');
  t.ok(text.length > 0, `streamed content: ${JSON.stringify(text)}`);

  const completion = await fetch(`${server.url}/completion`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'hello', n_predict: 8, stream: true }),
  });
  t.equal(completion.status, 200);
  const chunks = await sseData(completion);
  t.ok(chunks.length >= 2, `${chunks.length} /completion events`);
  t.match(chunks[chunks.length - 1], { stop: true });
});

t.test('TOOL_PARSE_ERROR_REQUEST gets the in-band peg-native parse error', async (t) => {
  const server = await startLlamaServer({ args: TOOL_PARSE_ERROR_SERVER_ARGS });
  t.teardown(() => server.stop());
  const res = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(TOOL_PARSE_ERROR_REQUEST()),
  });
  t.equal(res.status, 200);
  const events = await sseData(res);
  t.match(events[0], { choices: [{ delta: { role: 'assistant' } }] });
  t.match(events[events.length - 1], {
    error: { code: 500, message: 'The model produced output that does not match the expected peg-native format' },
  });
  t.notOk(events.includes('[DONE]'), 'no [DONE] after the error');
});
