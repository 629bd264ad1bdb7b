// The post-commit relay: bytes pass unchanged, legacy `error:` lines become `data:` error frames however
// the chunks fall, and the end-of-body check tells a proper ending from a stream that just stopped.
import t from 'tap';
import { StreamRelay } from '../../src/sse/stream-relay.js';

function relayAll(chunks: Buffer[], tailBytes = 65536): { out: string; endedWell: boolean; padding: string } {
  const parts: Buffer[] = [];
  const relay = new StreamRelay({ write: (b) => (parts.push(Buffer.from(b)), true) }, { tailBytes });
  for (const c of chunks) relay.write(c);
  relay.flush();
  return { out: Buffer.concat(parts).toString('utf8'), endedWell: relay.endedWell(), padding: relay.eventBoundaryPadding() };
}

function cutEverywhere(text: string): Buffer[][] {
  const bytes = Buffer.from(text);
  const ways: Buffer[][] = [[bytes], Array.from(bytes, (b) => Buffer.from([b]))];
  for (let cut = 1; cut < bytes.length; cut++) ways.push([bytes.subarray(0, cut), bytes.subarray(cut)]);
  return ways;
}

const CHUNK = 'data: {"choices":[{"delta":{"content":"error: not a field"},"finish_reason":null}]}\n\n';

t.test('healthy bytes pass through unchanged, even text that looks like a field', async (t) => {
  const text = `${CHUNK}data: [DONE]\n\n`;
  for (const chunks of cutEverywhere(text)) {
    const r = relayAll(chunks);
    t.equal(r.out, text);
    t.equal(r.endedWell, true);
  }
});

t.test('a legacy error line after the commit is rewritten, wherever the chunks are cut', async (t) => {
  const legacy = 'error: {"code":500,"message":"Context size has been exceeded.","type":"server_error"}';
  const text = `${CHUNK}${legacy}\n\ndata: [DONE]\n\n`;
  const want = `${CHUNK}data: {"error":{"code":500,"message":"Context size has been exceeded.","type":"server_error"}}\n\ndata: [DONE]\n\n`;
  for (const chunks of cutEverywhere(text)) t.equal(relayAll(chunks).out, want, `${chunks.length} chunks, first ${chunks[0]?.length}`);
});

t.test('the b1542–b2399 {"content": msg} payload becomes a typed error; CRLF kept', async (t) => {
  const r = relayAll([Buffer.from(`${CHUNK}error: {"content":"internal_error"}\r\n\r\n`)]);
  t.equal(r.out, `${CHUNK}data: {"error":{"code":500,"message":"internal_error","type":"server_error"}}\r\n\r\n`);
  t.equal(r.endedWell, true, 'ends with an error the client sees');
});

t.test('a stream that stops mid-way did not end well, and says what to write before our frame', async (t) => {
  t.same(relayAll([Buffer.from(CHUNK)]), { out: CHUNK, endedWell: false, padding: '' });
  t.equal(relayAll([Buffer.from('data: {"choi')]).padding, '\n\n');
  t.equal(relayAll([Buffer.from('data: {}\n')]).padding, '\n');
  t.equal(relayAll([Buffer.from('data: {}\r\n')]).padding, '\n');
});

t.test('the end check reads the last event even when the window starts mid-stream', async (t) => {
  const many = Array.from({ length: 200 }, () => Buffer.from(CHUNK));
  t.equal(relayAll([...many, Buffer.from('data: [DONE]\n\n')], 1024).endedWell, true);
  t.equal(relayAll(many, 1024).endedWell, false);
  const native = Buffer.from(`data: {"content":"","stop":true,"prompt":"${'x'.repeat(500)}"}\n\n`);
  t.equal(relayAll([...many, native], 1024).endedWell, true, 'a large final event');
});

t.test('backpressure is reported', async (t) => {
  const relay = new StreamRelay({ write: () => false }, { tailBytes: 1024 });
  t.equal(relay.write(Buffer.from(CHUNK)), false);
});

t.test('the end check keeps the last bytes however long the stream and however it is cut', async (t) => {
  // The window is a ring that grows and wraps: pieces smaller and larger than it, many times its size.
  let seed = 7;
  const next = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const tokens = Array.from({ length: 300 }, (_, i) => `data: {"choices":[{"delta":{"content":"${'t'.repeat(next(40))}${i}"}}]}\n\n`).join('');
  const big = `data: {"content":"","stop":true,"prompt":"${'x'.repeat(700)}"}\n\n`;
  const endings: Array<[string, 'done' | 'error' | 'unfinished']> = [
    ['data: [DONE]\n\n', 'done'],
    ['data: {"error":{"code":500,"message":"boom","type":"server_error"}}\n\n', 'error'],
    ['data: {"choices":[{"delta":{"content":"x"},"finish_reason":null}]}\n\n', 'unfinished'],
    ['data: {"choices":[{"delta":{"cont', 'unfinished'],
    [big, 'done'], // larger than the window: unreadable, taken as a proper ending
  ];
  for (const tailBytes of [256, 500, 4096]) {
    for (const [ending, want] of endings) {
      const bytes = Buffer.from(tokens + ending);
      for (let trial = 0; trial < 20; trial++) {
        const relay = new StreamRelay({ write: () => true }, { tailBytes });
        for (let pos = 0; pos < bytes.length; ) {
          const size = 1 + next(trial % 2 === 0 ? 64 : tailBytes * 2);
          relay.write(bytes.subarray(pos, pos + size));
          pos += size;
        }
        relay.flush();
        if (relay.ending() !== want) t.fail(`window ${tailBytes}, ending ${JSON.stringify(ending.slice(0, 30))}: ${relay.ending()}, want ${want}`);
      }
    }
  }
  t.pass('every cut');
});
