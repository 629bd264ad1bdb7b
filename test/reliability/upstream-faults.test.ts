// Upstream faults through the in-process proxy with small timeouts: refused and reset connections in
// every phase, silences, an endless first event, broken chunking, gzip, garbage. Each must give the
// client a real status or an error frame within the configured bounds, never a hang, and the proxy must
// still serve a healthy stream right after. The cases run concurrently (each has its own upstream plan),
// so the file costs one timeout, not one per silence.
import t from 'tap';
import { FAULT_CASES, FaultBench } from './.harness/faults.js';

const bench = new FaultBench();
t.teardown(() => bench.close());
const results = await bench.runAll(FAULT_CASES);

for (const result of results) {
  const fc = result.case;
  t.test(`${fc.id}: ${fc.title}`, async (t) => {
    for (const c of result.checks) t.ok(c.ok, c.name, { detail: c.detail });
    for (const c of result.after) t.ok(c.ok, c.name, { detail: c.detail });
  });
}

t.test('nothing at warn level or above in any proxy log', async (t) => {
  t.same(
    results.flatMap((r) => r.badLogs),
    [],
  );
});
