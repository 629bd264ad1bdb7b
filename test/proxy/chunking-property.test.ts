// Property: how the upstream's bytes are cut on the wire never changes what the client gets. For every
// fixture, one-byte writes and many random cuttings (inside CRLF, inside chunk-size lines, inside UTF-8
// sequences) give the same status, marker header and body bytes as the bytes written whole.
import t from 'tap';
import { ALL_FIXTURES } from '../fixtures/catalogue.js';
import type { UpstreamFixture } from '../fixtures/types.js';
import { serializeFixture, startFakeUpstream } from '../helpers/fake-upstream.js';
import { startProxy } from '../helpers/proxy.js';

const SEEDS = Number(process.env.CHUNKING_SEEDS ?? 8);
/** One write per byte costs a tick per byte; past this size random cuttings cover the same ground. */
const BYTEWISE_LIMIT = 16 * 1024;

const upstream = await startFakeUpstream();
const proxy = await startProxy({ upstream: upstream.url, firstEventTimeoutMs: 0 });
t.teardown(async () => {
  await proxy.stop();
  await upstream.close();
});

async function seen(fx: UpstreamFixture, split?: string): Promise<string> {
  const post = fx.method === 'POST';
  const res = await fetch(proxy.url + fx.path, {
    method: fx.method,
    headers: { 'x-fixture': fx.id, ...(split ? { 'x-fixture-split': split } : {}), ...(post ? { 'content-type': 'application/json' } : {}) },
    ...(post ? { body: '{"stream":true}' } : {}),
  });
  const body = Buffer.from(await res.arrayBuffer());
  return JSON.stringify({ status: res.status, rewritten: res.headers.get('x-status-rewritten'), body: body.toString('base64') });
}

for (const fx of ALL_FIXTURES) {
  t.test(fx.id, async (t) => {
    const whole = await seen(fx);
    if (serializeFixture(fx).length <= BYTEWISE_LIMIT) t.equal(await seen(fx, 'bytes'), whole, 'one byte per write');
    for (let seed = 1; seed <= SEEDS; seed++) t.equal(await seen(fx, `random:${seed}`), whole, `random cutting, seed ${seed}`);
  });
}
