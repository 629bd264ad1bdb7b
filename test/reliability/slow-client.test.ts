// Backpressure: two clients read one byte per millisecond, one from a guarded SSE stream, one from a
// relayed (verbatim) JSON body, each offered 1 GiB by an upstream that writes only when its socket takes
// more. The proxy (a child process, so its memory is its own) must stop reading from the upstream and
// keep its memory flat instead of buffering the stream.
import t from 'tap';
import { runSlowClient } from './.harness/slow-client.js';
import { deltaMb, mb, MB } from './.harness/probes.js';
import { envInt, SIZES } from './.harness/sizes.js';

const readMs = envInt('RELIABILITY_SLOW_MS', SIZES.slowClient.readMs);
const run = await runSlowClient({ readMs });
const rss = run.proxyRss;
t.comment(`proxy RSS: ${mb(rss.start)} MB at rest, ${mb(rss.at1s)} MB after 1 s, ${mb(rss.peak)} MB peak, ${mb(rss.end)} MB after ${readMs} ms`);

for (const r of run.results) {
  t.test(`${r.mode} stream`, async (t) => {
    t.comment(`upstream sent ${mb(r.upstreamSent.at1s)} MB after 1 s, ${mb(r.upstreamSent.end)} MB at the end, of ${mb(r.streamBytes)} MB; client read ${r.clientBytes} bytes`);
    t.ok(r.clientBytes > 0 && r.clientBytes <= readMs, `the client read one byte per ms (${r.clientBytes} in ${readMs} ms)`);
    t.ok(r.upstreamSent.end < r.streamBytes / 8, `the upstream could send only a fraction of the stream (${mb(r.upstreamSent.end)} MB)`);
    t.ok(r.upstreamBlocked, "the upstream's writes back up: its socket refuses more");
    // once the buffers on the path are full, the upstream moves only as fast as the client reads
    t.ok(r.upstreamSent.end - r.upstreamSent.at1s < 4 * MB, `the upstream is paused (${deltaMb(r.upstreamSent.end - r.upstreamSent.at1s)} MB after the first second)`);
    t.ok(r.upstreamClosedMs !== undefined && r.upstreamClosedMs < 1000, `the upstream connection closed after the client left (${r.upstreamClosedMs} ms)`);
  });
}

t.test('proxy memory does not grow with the stream', async (t) => {
  t.ok(rss.end - rss.at1s < 16 * MB, `flat while the clients read (${deltaMb(rss.end - rss.at1s)} MB)`);
  t.ok(rss.peak - rss.start < 96 * MB, `peak well below the 2 GiB offered (${deltaMb(rss.peak - rss.start)} MB over rest)`);
});
