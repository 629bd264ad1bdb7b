// Which events decide a held stream, and how; table-driven, one row per shape seen from llama-server
// (and the servers in the reference catalogue).
import t from 'tap';
import { classifyEvent, isFinalEvent } from '../../src/sse/classify.js';
import type { SseEvent } from '../../src/sse/event-reader.js';

const ev = (data: string | undefined, event = '', legacyError?: string): SseEvent => ({ event, data, legacyError });

const rows: Array<[string, SseEvent, string]> = [
  ['no data', ev(undefined, 'ping'), 'hold'],
  ['empty data', ev(''), 'hold'],
  ['data: null between prompts', ev('null'), 'hold'],
  ['chat role-only chunk', ev('{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"object":"chat.completion.chunk"}'), 'hold'],
  ['chat chunk with empty content', ev('{"choices":[{"finish_reason":null,"index":0,"delta":{"content":""}}]}'), 'hold'],
  ['chat prompt progress', ev('{"choices":[{"delta":{}}],"prompt_progress":{"total":10,"processed":5}}'), 'hold'],
  ['chat content', ev('{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Hi"}}]}'), 'output'],
  ['chat reasoning', ev('{"choices":[{"delta":{"reasoning_content":"hmm"}}]}'), 'output'],
  ['chat tool call', ev('{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}'), 'output'],
  ['chat finish without content', ev('{"choices":[{"delta":{},"finish_reason":"length"}]}'), 'output'],
  ['completion text', ev('{"choices":[{"text":"7","index":0,"finish_reason":null}],"object":"text_completion"}'), 'output'],
  ['completion empty text', ev('{"choices":[{"text":"","index":0,"finish_reason":null}],"object":"text_completion"}'), 'hold'],
  ['native content', ev('{"index":0,"content":"7","stop":false}'), 'output'],
  ['native empty piece', ev('{"index":0,"content":"","stop":false}'), 'hold'],
  ['native stop', ev('{"index":0,"content":"","stop":true}'), 'output'],
  ['responses preamble', ev('{"type":"response.created","response":{}}', 'response.created'), 'hold'],
  ['responses content part added', ev('{"type":"response.content_part.added"}', 'response.content_part.added'), 'hold'],
  ['responses text delta', ev('{"type":"response.output_text.delta","delta":"3"}', 'response.output_text.delta'), 'output'],
  ['anthropic message_start', ev('{"type":"message_start","message":{"id":"m"}}', 'message_start'), 'hold'],
  ['anthropic ping', ev('{"type": "ping"}', 'ping'), 'hold'],
  ['anthropic content_block_delta', ev('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"3"}}', 'content_block_delta'), 'output'],
  ['[DONE]', ev('[DONE]'), 'done'],
  ['unknown JSON shape decides', ev('{"hello":"world"}'), 'output'],
  ['not JSON decides', ev('hello'), 'output'],
  ['data error object', ev('{"error":{"code":500,"message":"Context size has been exceeded.","type":"server_error"}}'), 'error'],
  ['bare error object (b3655–b4274, ik_llama.cpp)', ev('{"code":400,"message":"m","type":"invalid_request_error"}'), 'error'],
  ['legacy error field', ev(undefined, '', '{"content":"internal_error"}'), 'error'],
  ['event: error', ev('{"code":500,"message":"m","type":"server_error"}', 'error'), 'error'],
  ['response.failed', ev('{"type":"response.failed","response":{"error":{"code":"server_error","message":"m"}}}', 'response.failed'), 'error'],
  ['error: null is not an error', ev('{"error":null,"choices":[{"delta":{"content":"x"}}]}'), 'output'],
];

t.test('verdicts', async (t) => {
  for (const [name, event, kind] of rows) t.equal(classifyEvent(event).kind, kind, name);
});

t.test('error payloads: JSON when it parses, the raw text when not', async (t) => {
  t.same(classifyEvent(ev(undefined, '', 'not json')), { kind: 'error', payload: { text: 'not json' } });
  t.same(classifyEvent(ev('{"error":{"message":"m"}}')), { kind: 'error', payload: { json: { message: 'm' } } });
  t.same(classifyEvent(ev('{"type":"response.failed","response":{"error":{"message":"m"}}}')), {
    kind: 'error',
    payload: { json: { message: 'm' } },
  });
});

t.test('final events: what a stream that ended well ends with', async (t) => {
  t.ok(isFinalEvent(ev('[DONE]')));
  t.ok(isFinalEvent(ev('{"index":0,"content":"","stop":true}')), 'native stop');
  t.ok(isFinalEvent(ev('{"type":"message_stop"}', 'message_stop')));
  t.ok(isFinalEvent(ev('{"type":"response.completed","response":{}}', 'response.completed')));
  t.ok(isFinalEvent(ev('{"error":{"message":"m"}}')), 'an error frame');
  t.ok(isFinalEvent(ev('{"choices":[{"delta":{},"finish_reason":"stop"}]}')), 'finish_reason (chat before b3754 had no [DONE])');
  t.ok(isFinalEvent(ev('{"choices":[],"usage":{"total_tokens":3}}')), 'usage chunk');
  t.notOk(isFinalEvent(ev('{"choices":[{"delta":{"content":"x"},"finish_reason":null}]}')), 'a content chunk');
  t.notOk(isFinalEvent(ev('{"index":0,"content":"7","stop":false}')), 'a native piece');
  t.notOk(isFinalEvent(ev('{"type":"content_block_delta"}', 'content_block_delta')));
  t.notOk(isFinalEvent(ev('{"choi')), 'a cut-off event');
});
