// Clients that leave at every phase: while uploading a large body, while the upstream has not answered,
// during the hold, mid-stream. Over many rounds nothing may be left behind: descriptors of this process
// (proxy, upstream and clients run in it), upstream connections, sockets; memory stays roughly flat.
import t from 'tap';
import { largeUploadWithExpect, runAborts } from './.harness/aborts.js';
import { deltaMb, mb, MB, retained } from './.harness/probes.js';
import { envInt, SIZES } from './.harness/sizes.js';

const iterations = envInt('RELIABILITY_ABORTS', SIZES.aborts.iterations);

t.test(`${iterations} abandoned exchanges, every phase in turn`, async (t) => {
  const r = await runAborts({ ...SIZES.aborts, iterations, seed: 1 });
  t.comment(
    `aborts by phase ${JSON.stringify(r.byPhase)}; fds ${r.fd.before} → ${r.fd.after}; ` +
      `RSS ${mb(r.memory.before.rss)} → ${mb(r.memory.after.rss)} MB, heap + buffers ${mb(retained(r.memory.before))} → ${mb(retained(r.memory.after))} MB; ` +
      `upstream closed ${r.closeMs.p50} ms (median) / ${r.closeMs.max} ms (max) after the client; ${r.ms} ms`,
  );
  t.same(r.problems, [], 'every phase was reached as planned');
  t.equal(Object.values(r.byPhase).reduce((a, b) => a + b, 0), iterations, 'every iteration aborted');
  t.equal(r.upstreamLeftOpen, 0, 'every upstream request was closed within 2 s of the client leaving');
  t.ok(r.closeMs.max < 1000, `the upstream learned of each abort promptly (max ${r.closeMs.max} ms)`);
  t.equal(r.upstreamConnections.after, 0, 'no connection to the upstream is held afterwards');
  t.ok(r.fd.after <= r.fd.before, `no leaked file descriptors (${r.fd.before} before, ${r.fd.after} after)`);
  t.ok(r.sockets.after <= r.sockets.before, `no leaked sockets (${r.sockets.before} before, ${r.sockets.after} after)`);
  t.equal(r.logged499, iterations, 'the proxy logged each one as 499');
  // Generous: the bound catches a per-exchange leak of buffers, not allocator noise.
  t.ok(r.memory.after.rss - r.memory.before.rss < 128 * MB, `RSS roughly flat (${deltaMb(r.memory.after.rss - r.memory.before.rss)} MB)`);
  const growth = retained(r.memory.after) - retained(r.memory.before);
  t.ok(growth < 24 * MB, `heap and buffers after GC roughly flat (${deltaMb(growth)} MB)`);
});

t.test('a large upload sent the way curl sends it (Expect: 100-continue) reaches the upstream whole', async (t) => {
  const r = await largeUploadWithExpect(2 * MB);
  t.equal(r.status, 200, `status 200 (got ${r.status}: ${r.answer})`);
  t.ok(r.bodyMatches, 'the stream relayed');
  t.equal(r.upstreamGot, r.sent, 'the upstream got the whole body');
});
