// Load with injected faults: many concurrent streams through the proxy (a child process, as deployed)
// against the fake upstream, about 5% of them broken (resets, in-band errors, truncations, empty
// streams). Every request must end in the outcome its upstream behaviour calls for, the proxy's own log
// must agree with what the clients saw, and it must log no error and keep running.
import t from 'tap';
import { runLoad } from './.harness/load.js';
import { mb } from './.harness/probes.js';
import { envInt, SIZES } from './.harness/sizes.js';

const concurrency = envInt('RELIABILITY_LOAD_CONCURRENCY', SIZES.load.concurrency);
const durationMs = envInt('RELIABILITY_LOAD_MS', SIZES.load.durationMs);
const r = await runLoad({ concurrency, durationMs, faultRate: SIZES.load.faultRate, seed: 1 });
t.comment(
  `${r.requests} requests, ${concurrency} concurrent for ${durationMs} ms; outcomes ${JSON.stringify(r.byOutcome)}; ` +
    `upstream kinds ${JSON.stringify(r.byUpstreamKind)}; healthy stream p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms; ` +
    `proxy RSS ${mb(r.proxyRss.start)} → ${mb(r.proxyRss.end)} MB`,
);

t.ok(r.requests >= concurrency, `requests were sent (${r.requests})`);
t.equal(r.byOutcome.unexpected, 0, 'no unexpected outcome', { examples: r.unexpected });
t.ok(r.byOutcome.ok > 0 && r.byOutcome.rewritten + r.byOutcome['own-error'] + r.byOutcome['error-frame'] > 0, 'both healthy and faulty exchanges happened');
t.equal(r.logged, r.requests, 'the proxy logged every request once');
t.equal(r.loggedByStatus['200'] ?? 0, r.byOutcome.ok + r.byOutcome['error-frame'], 'its 200s are the clients’ streams (whole or ended by a frame)');
t.same(r.badLogs, [], 'no warning or error in the proxy log');
t.equal(r.stderr, '', 'nothing on the proxy’s stderr');
t.ok(r.proxyAlive, 'the proxy is still running');
