// A client that gives up mid-stream must free llama-server's slot: the proxy has to pass the disconnect
// on, or the slot keeps generating tokens nobody reads.
import t from 'tap';
import { isRequestLine, LONG_GENERATION, longContextModel, sleep, startStack } from '../helpers/e2e.js';

// On the 32k-context model LONG_GENERATION takes minutes, so an idle slot soon after the abort can
// only mean the generation was cancelled.
const REQUEST = LONG_GENERATION;
const CHUNKS_BEFORE_ABORT = 5;
const IDLE_WITHIN_MS = 2_000; // the spec's bound
const POLL_MS = 50;

interface Slot {
  id: number;
  is_processing: boolean;
}

async function slots(url: string): Promise<Slot[]> {
  const res = await fetch(`${url}/slots`);
  return (await res.json()) as Slot[];
}

t.test('a client abort frees the llama-server slot', async (t) => {
  const stack = await startStack({ model: longContextModel(), args: ['-c', '32768', '-np', '1'] });
  t.teardown(() => stack.stop());

  const controller = new AbortController();
  let busyAtAbort: Slot[] = [];
  let abortedAt = 0;
  let received = 0;
  let error: unknown;
  try {
    const stream = await stack.client.chat.completions.create(REQUEST, { signal: controller.signal });
    for await (const _chunk of stream) {
      received++;
      if (received === CHUNKS_BEFORE_ABORT) {
        busyAtAbort = await slots(stack.llama.url);
        abortedAt = performance.now();
        controller.abort();
      }
      if (received > REQUEST.max_tokens) break;
    }
  } catch (err) {
    error = err;
  }
  t.equal(error, undefined, 'the SDK ends an aborted stream quietly');
  // Events already read from the socket in the same read may still be yielded after the abort.
  t.ok(received >= CHUNKS_BEFORE_ABORT && received < REQUEST.max_tokens, `${received} chunks, then the stream ended`);
  t.match(busyAtAbort, [{ is_processing: true }], 'the slot was generating when the client left');

  let idleAfterMs: number | undefined;
  for (let i = 0; i < IDLE_WITHIN_MS / POLL_MS + 1; i++) {
    const now = await slots(stack.llama.url);
    if (now.every((s) => !s.is_processing)) {
      idleAfterMs = performance.now() - abortedAt;
      break;
    }
    await sleep(POLL_MS);
  }
  t.ok(idleAfterMs !== undefined && idleAfterMs <= IDLE_WITHIN_MS, `slot idle ${idleAfterMs?.toFixed(0) ?? 'never'} ms after the abort`);

  const line = await stack.proxy.waitForLog(isRequestLine('/v1/chat/completions'), 5_000);
  t.equal(line.status, 499);
  t.equal(line.clientAbort, true);
  t.equal(line.upstreamStatus, 200);
});
