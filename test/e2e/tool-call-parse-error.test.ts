// A tool call llama-server cannot parse: b11669 says so inside a 200 stream, right after the role chunk.
// Through the proxy the client gets the 500 that the non-stream request would have got.
import t from 'tap';
import OpenAI from 'openai';
import { TOOL_PARSE_ERROR_REQUEST, TOOL_PARSE_ERROR_SERVER_ARGS } from '../helpers/llama-server.js';
import { collect, post, sseData, startStack } from '../helpers/e2e.js';

const MESSAGE = 'The model produced output that does not match the expected peg-native format';
const ERROR_BODY = `{"error":{"code":500,"message":"${MESSAGE}","type":"server_error"}}`;

function sdkRequest(): OpenAI.ChatCompletionCreateParamsStreaming {
  const body = TOOL_PARSE_ERROR_REQUEST(true);
  return {
    model: 'tiny',
    messages: body.messages.map((m) => ({ role: m.role as 'user' | 'assistant', content: m.content })),
    tools: body.tools.map((tool) => ({
      type: tool.type,
      function: { ...tool.function, parameters: tool.function.parameters as Record<string, unknown> },
    })),
    max_tokens: body.max_tokens,
    stream: true,
  };
}

t.test('an in-band tool-call parse error becomes a real 500', async (t) => {
  const stack = await startStack({ args: TOOL_PARSE_ERROR_SERVER_ARGS });
  t.teardown(() => stack.stop());

  await t.test('directly: 200, the role chunk, then the error inside the stream', async (t) => {
    const res = await post(stack.llama.url, '/v1/chat/completions', TOOL_PARSE_ERROR_REQUEST(true));
    t.equal(res.status, 200);
    t.equal(res.headers.get('content-type'), 'text/event-stream');
    const data = sseData(await res.text());
    t.equal(data.length, 2, 'two events');
    t.match(JSON.parse(data[0] ?? '{}'), { choices: [{ delta: { role: 'assistant', content: null } }] });
    t.equal(data[1], ERROR_BODY);

    const sdk = await collect(() => stack.direct.chat.completions.create(sdkRequest()));
    t.equal(sdk.chunks.length, 1, 'the SDK yields the role chunk first');
    t.type(sdk.error, OpenAI.APIError);
    t.notOk(sdk.error instanceof OpenAI.InternalServerError, 'an error without a status');
    t.equal((sdk.error as InstanceType<typeof OpenAI.APIError>).status, undefined);
  });

  await t.test('through the proxy: HTTP 500 with the error as the body', async (t) => {
    const res = await post(stack.proxy.url, '/v1/chat/completions', TOOL_PARSE_ERROR_REQUEST(true));
    t.equal(res.status, 500);
    t.equal(res.headers.get('x-status-rewritten'), 'in-band-error');
    t.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
    t.equal(res.headers.get('x-accel-buffering'), null, 'no stream headers on a JSON answer');
    t.equal(await res.text(), ERROR_BODY);

    const sdk = await collect(() => stack.client.chat.completions.create(sdkRequest()));
    t.equal(sdk.chunks.length, 0, 'nothing yielded');
    t.type(sdk.error, OpenAI.InternalServerError);
    const err = sdk.error as InstanceType<typeof OpenAI.InternalServerError>;
    t.equal(err.status, 500);
    t.equal(err.message, `500 ${MESSAGE}`);
    t.equal(err.headers?.get('x-status-rewritten'), 'in-band-error');
  });
});
