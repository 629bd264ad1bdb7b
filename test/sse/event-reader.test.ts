// The SSE reader by the WHATWG rules, fed in every way a socket can cut the bytes.
import t from 'tap';
import { readAllEvents, SseEventReader, type SseEvent } from '../../src/sse/event-reader.js';

const enc = (s: string): Buffer => Buffer.from(s, 'utf8');

function readInPieces(bytes: Buffer, cuts: number[]): SseEvent[] {
  const events: SseEvent[] = [];
  const reader = new SseEventReader();
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    reader.push(bytes.subarray(from, cut), (e) => void events.push(e));
    from = cut;
  }
  reader.end((e) => void events.push(e));
  return events;
}

t.test('line endings: LF, CRLF and CR all end lines and events', async (t) => {
  for (const eol of ['\n', '\r\n', '\r']) {
    const events = readAllEvents(enc(`data: a${eol}${eol}event: x${eol}data: b${eol}${eol}`));
    t.same(
      events,
      [
        { event: '', data: 'a', legacyError: undefined },
        { event: 'x', data: 'b', legacyError: undefined },
      ],
      JSON.stringify(eol),
    );
  }
});

t.test('multi-line data joins with LF; one leading space is stripped, no more', async (t) => {
  const [ev] = readAllEvents(enc('data:  two\ndata:one\ndata\n\n'));
  t.equal(ev?.data, ' two\none\n');
});

t.test('comments, ids, retry and unknown fields dispatch nothing', async (t) => {
  t.same(readAllEvents(enc(':\n\n: ping\n\nid: 7\nretry: 10\n\nfoo: bar\n\n')), []);
});

t.test('the legacy `error:` field of llama-server b1542–b6522 is kept apart from data', async (t) => {
  const [ev] = readAllEvents(enc('error: {"code":400,"message":"m","type":"invalid_request_error"}\n\n'));
  t.equal(ev?.legacyError, '{"code":400,"message":"m","type":"invalid_request_error"}');
  t.equal(ev?.data, undefined);
});

t.test('a leading BOM is ignored, even when split across chunks', async (t) => {
  const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), enc('data: x\n\n')]);
  for (let cut = 1; cut < 4; cut++) {
    t.same(readInPieces(bytes, [cut]).map((e) => e.data), ['x'], `cut at ${cut}`);
  }
});

t.test('every single cut point gives the same events (CRLF and UTF-8 included)', async (t) => {
  const bytes = enc('event: a\r\ndata: héllo ✓ 😀\r\n\r\n:\r\n\r\ndata: [DONE]\r\n\r\n');
  const whole = readAllEvents(bytes);
  t.equal(whole.length, 2);
  for (let cut = 1; cut < bytes.length; cut++) t.same(readInPieces(bytes, [cut]), whole, `cut at ${cut}`);
  t.same(readInPieces(bytes, Array.from({ length: bytes.length - 1 }, (_, i) => i + 1)), whole, 'one byte at a time');
});

t.test('a CR at the end of one chunk and LF at the start of the next is one line end', async (t) => {
  t.same(readInPieces(enc('data: a\r\n\r\ndata: b\r\n\r\n'), [8, 10]).map((e) => e.data), ['a', 'b']);
});

t.test('end(): an unterminated last event still counts', async (t) => {
  t.same(readAllEvents(enc('data: [DONE]')).map((e) => e.data), ['[DONE]']);
  t.same(readAllEvents(enc('data: [DONE]\n')).map((e) => e.data), ['[DONE]']);
});

t.test('a sink can stop the reader mid-chunk', async (t) => {
  const reader = new SseEventReader();
  const seen: string[] = [];
  const stopped = reader.push(enc('data: 1\n\ndata: 2\n\n'), (e) => {
    seen.push(e.data ?? '');
    return true;
  });
  t.equal(stopped, true);
  t.same(seen, ['1']);
  t.equal(reader.push(enc('data: 3\n\n'), () => false), true, 'stays stopped');
});
