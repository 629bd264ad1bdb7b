/**
 * Regenerates docs/reliability.md: runs the reliability scenarios of test/reliability at full size
 * (or CI size with --quick) and writes what was tried, what the clients saw, and what was left behind.
 *
 *   npx tsc -p . && node dist/scripts/reliability-report.js [--quick] [--out docs/reliability.md]
 *
 * The numbers come from the same code the tests assert on (test/reliability/.harness), so the document and
 * the tests cannot drift apart. It writes the document even when checks fail: the failures are findings.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, relative } from 'node:path';
import { projectRoot } from '../src/project-root.js';
import { FAULT_CASES, FAULT_OPTIONS, FaultBench, type FaultResult } from '../test/reliability/.harness/faults.js';
import { largeUploadWithExpect, PHASES, runAborts } from '../test/reliability/.harness/aborts.js';
import { runSlowClient } from '../test/reliability/.harness/slow-client.js';
import { FAULT_KINDS, runLoad } from '../test/reliability/.harness/load.js';
import { fuzzInputs, fuzzLongStream, longFinalEventCuts } from '../test/reliability/.harness/fuzz.js';
import { mb, MB, retained } from '../test/reliability/.harness/probes.js';
import { CI_SIZES, FULL_SIZES } from '../test/reliability/.harness/sizes.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const outArg = args[args.indexOf('--out') + 1];
const out = args.includes('--out') && outArg !== undefined ? outArg : join(projectRoot(), 'docs', 'reliability.md');
const sizes = quick ? CI_SIZES : FULL_SIZES;
const command = `npx tsc -p . && node dist/scripts/reliability-report.js${quick ? ' --quick' : ''}`;

const log = (text: string): void => void process.stderr.write(`${text}\n`);
const started = performance.now();

/** A failed expectation, worded for the findings list. */
interface Finding {
  where: string;
  what: string;
}
const findings: Finding[] = [];

log('fuzz …');
const fuzz = fuzzInputs({ inputs: sizes.fuzz.inputs, seed: 1 });
const stream = fuzzLongStream({ bytes: sizes.fuzz.streamBytes, seed: 1 });
const longFinal = longFinalEventCuts({ tailBytes: 256, trials: 1000, seed: 1 });
if (fuzz.exceptions > 0 || fuzz.failureCount > 0) findings.push({ where: 'sse-fuzz', what: `${fuzz.failureCount} counterexamples, e.g. ${fuzz.failures[0] ?? ''}` });
if (longFinal.misjudged > 0) findings.push({ where: 'sse-fuzz / stream-relay', what: `endedWell() false for ${longFinal.misjudged} of ${longFinal.trials} healthy streams whose final event is longer than the tail window (${longFinal.example ?? ''})` });

log('upstream faults …');
const bench = new FaultBench();
const faults: FaultResult[] = await bench.runAll(FAULT_CASES);
await bench.close();
for (const r of faults) {
  for (const c of [...r.checks, ...r.after]) if (!c.ok) findings.push({ where: `fault ${r.case.id}`, what: `${c.name}: ${c.detail}` });
}

log('client aborts …');
const aborts = await runAborts({ ...sizes.aborts, seed: 1 });
const upload = await largeUploadWithExpect(2 * MB);
if (upload.status !== 200) findings.push({ where: 'client-aborts / upload', what: `a 2 MiB upload with Expect: 100-continue got ${upload.status}: ${upload.answer}` });
if (aborts.problems.length > 0) findings.push({ where: 'client-aborts', what: aborts.problems.slice(0, 3).join('; ') });

log('slow client …');
const slow = await runSlowClient({ readMs: sizes.slowClient.readMs });

log(`load (${sizes.load.concurrency} × ${sizes.load.durationMs} ms) …`);
const load = await runLoad({ ...sizes.load, seed: 1 });
if (load.byOutcome.unexpected > 0) findings.push({ where: 'load', what: `${load.byOutcome.unexpected} unexpected outcomes, e.g. ${load.unexpected[0] ?? ''}` });
if (load.badLogs.length > 0 || load.stderr !== '' || !load.proxyAlive) findings.push({ where: 'load', what: `proxy log/stderr: ${JSON.stringify(load.badLogs.slice(0, 2))} ${load.stderr.slice(0, 200)}` });

// ---- the document -----------------------------------------------------------------------------------

const leaks = {
  fds: Math.max(0, aborts.fd.after - aborts.fd.before),
  sockets: Math.max(0, aborts.sockets.after - aborts.sockets.before),
  upstreamConnections: aborts.upstreamConnections.after + aborts.upstreamLeftOpen,
  slowUpstreamsLeftOpen: slow.results.filter((r) => r.upstreamClosedMs === undefined).length,
};
const leakTotal = leaks.fds + leaks.sockets + leaks.upstreamConnections + leaks.slowUpstreamsLeftOpen;
// every fault case sends 3 requests (the fault, /-/live, a healthy stream; 2 when the upstream is down)
const faultRequests = faults.reduce((n, r) => n + 1 + r.after.length, 0);
const abortRequests = aborts.iterations + 2 * PHASES.length;
const requests = faultRequests + abortRequests + 1 + slow.results.length + load.requests;
const faultsPassed = faults.filter((r) => [...r.checks, ...r.after].every((c) => c.ok)).length;

/** The second half of the samples stays within 10% (or 8 MB) of the first half's peak. */
function levelsOff(samples: readonly number[]): boolean {
  const half = Math.floor(samples.length / 2);
  const early = Math.max(0, ...samples.slice(0, half));
  return Math.max(0, ...samples.slice(half)) <= Math.max(early * 1.1, early + 8 * MB);
}
if (!levelsOff(load.rssTimeline)) findings.push({ where: 'load', what: `proxy RSS keeps climbing: ${load.rssTimeline.map((b) => mb(b)).join(', ')} MB` });

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const sawOf = (r: FaultResult): string => {
  const s = r.seen;
  if (s.end !== 'complete') return `${s.status ?? 'no status'}, ${s.end}${s.error ? ` (${s.error})` : ''}`;
  const text = s.body.toString('utf8');
  const frame = /data: (\{"error".*\})\n\n$/.exec(text);
  const json = /^\{"error":\{"code":"([a-z_]+)"/.exec(text);
  if (s.status === 200 && frame) return `200 + error frame \`${/"code":"([a-z_]+)"/.exec(frame[1] ?? '')?.[1] ?? '?'}\``;
  if (json) return `${s.status} \`${json[1]}\``;
  return `${s.status}${s.headers['content-encoding'] ? ` (${s.headers['content-encoding']})` : ''}, ${s.body.length} bytes`;
};
const verdict = (r: FaultResult): string => {
  const failed = [...r.checks, ...r.after].filter((c) => !c.ok);
  return failed.length === 0 ? 'ok' : `**FAIL**: ${failed.map((c) => c.name).join('; ')}`;
};

const lines: string[] = [];
const p = (...text: string[]): void => void lines.push(...text);
p(
  '# Reliability: upstream faults, client aborts, backpressure, load',
  '',
  `<!-- generated by scripts/reliability-report.ts; edit the script, not this file -->`,
  '',
  `Produced by \`${command}\` on ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${availableParallelism()} cores,`,
  `${quick ? 'CI sizes (`--quick`)' : 'full sizes'}, in ${Math.round((performance.now() - started) / 1000)} s. The same scenarios run in CI at smaller sizes:`,
  '`npx tap dist/test/reliability` (set `RELIABILITY_FULL=1` for these sizes).',
  '',
  '## Summary',
  '',
  '| | |',
  '|---|---|',
  `| upstream faults tried | ${faults.length} cases, ${faultsPassed} with every check passing |`,
  `| requests sent through the proxy | ${requests} (faults ${faultRequests}, aborts ${abortRequests}, upload 1, slow clients ${slow.results.length}, load ${load.requests}) |`,
  `| outcomes under load | ${Object.entries(load.byOutcome).map(([k, v]) => `${k} ${v}`).join(', ')} |`,
  `| leaks found | ${leakTotal} (descriptors ${leaks.fds}, sockets ${leaks.sockets}, upstream connections ${leaks.upstreamConnections}, slow-client upstreams left open ${leaks.slowUpstreamsLeftOpen}) |`,
  `| RSS before → after ${aborts.iterations} aborts (test process, after GC) | ${mb(aborts.memory.before.rss)} → ${mb(aborts.memory.after.rss)} MB; heap + buffers ${mb(retained(aborts.memory.before))} → ${mb(retained(aborts.memory.after))} MB |`,
  `| proxy RSS under slow clients (child process) | ${mb(slow.proxyRss.start)} MB at rest, ${mb(slow.proxyRss.peak)} MB peak, ${mb(slow.proxyRss.end)} MB at the end |`,
  `| proxy RSS under load (child process) | ${mb(load.proxyRss.start)} MB at rest, ${mb(load.proxyRss.peak)} MB peak, ${mb(load.proxyRss.end)} MB at the end |`,
  `| SSE fuzz | ${fuzz.inputs} inputs, ${fuzz.feedings} feedings, ${fuzz.exceptions} exceptions, ${fuzz.failureCount} counterexamples |`,
  `| findings (failed checks) | ${findings.length} |`,
  '',
);

p(
  '## Upstream faults',
  '',
  `One request per case through the in-process proxy, all cases at once, with \`firstEventTimeoutMs\` ${FAULT_OPTIONS.firstEventTimeoutMs},`,
  `\`upstreamHeadersTimeoutMs\` ${FAULT_OPTIONS.upstreamHeadersTimeoutMs}, \`upstreamBodyTimeoutMs\` ${FAULT_OPTIONS.upstreamBodyTimeoutMs}, \`maxHoldBytes\` ${FAULT_OPTIONS.maxHoldBytes}`,
  '(unless the case says otherwise). After each fault the same proxy must answer `/-/live` and relay a healthy stream.',
  'undici checks its timeouts on a clock that ticks about every 500 ms, so a timeout fires up to about a second late;',
  'the bound for a silence is the configured timeout plus 1.5 s, for a fault the proxy sees at once 2.5 s (the error code',
  'tells it from a timeout), against a client that gives up at 8 s. All cases start together, so even the instant ones',
  'include the start-up of the proxies they share.',
  '',
  'Content-Encoding other than identity is relayed untouched by design (`isReadableEventStream` in guarded-exchange.ts): for',
  '`gzip-sse-error` the client gets 200 and, once it decodes the body, the in-band error as a `data:` frame, not a status.',
  '',
  '| case | what the upstream does | client saw | head / end (ms) | bound (ms) | verdict |',
  '|---|---|---|---|---|---|',
  ...faults.map(
    (r) =>
      `| \`${r.case.id}\` | ${cell(r.case.title)} | ${cell(sawOf(r))} | ${r.seen.headersMs === undefined ? '–' : Math.round(r.seen.headersMs)} / ${Math.round(r.seen.ms)} | ${r.case.withinMs} | ${cell(verdict(r))} |`,
  ),
  '',
);

p(
  '## Client aborts',
  '',
  `${aborts.iterations} exchanges abandoned by the client, ${sizes.aborts.concurrency} at a time, cycling through the phases`,
  `(${Object.entries(aborts.byPhase).map(([k, v]) => `${k} ${v}`).join(', ')}): during the upload of a ${mb(sizes.aborts.uploadBytes)} MiB body (a quarter sent),`,
  'while the upstream has not answered, during the hold (role chunk only), and mid-stream (after the first token).',
  'Proxy, fake upstream and clients share one process, so its descriptors cover both ends of every connection.',
  '',
  '| measure | before | after |',
  '|---|---|---|',
  `| open file descriptors (/proc/self/fd) | ${aborts.fd.before} | ${aborts.fd.after} |`,
  `| TCP sockets (active handles) | ${aborts.sockets.before} | ${aborts.sockets.after} |`,
  `| connections held on the upstream port (/proc/net/tcp) | ${aborts.upstreamConnections.before} | ${aborts.upstreamConnections.after} |`,
  `| RSS after GC | ${mb(aborts.memory.before.rss)} MB | ${mb(aborts.memory.after.rss)} MB |`,
  `| heap + buffer contents after GC | ${mb(retained(aborts.memory.before))} MB | ${mb(retained(aborts.memory.after))} MB |`,
  '',
  `Upstream requests left open 2 s after the client left: ${aborts.upstreamLeftOpen}. The upstream saw the close ${aborts.closeMs.p50} ms (median),`,
  `${aborts.closeMs.max} ms (max) after the client left. Exchanges the proxy logged as 499: ${aborts.logged499} of ${aborts.iterations}.`,
  'RSS includes the fake upstream and the clients and is what the allocator kept, not what is referenced; heap plus buffer',
  'contents after a full collection is the better leak signal.',
  '',
  `A ${mb(upload.sent)} MiB upload with \`Expect: 100-continue\` (as curl sends large bodies): status ${upload.status}, upstream received`,
  `${upload.upstreamGot ?? 0} of ${upload.sent} bytes${upload.status === 200 ? '.' : ` — answer: \`${cell(upload.answer)}\`.`}`,
  '',
);

p(
  '## Slow client (backpressure)',
  '',
  `Two clients read one byte per millisecond for ${sizes.slowClient.readMs} ms, one from a guarded SSE stream, one from a relayed`,
  '(not SSE) JSON body, each offered 1 GiB by an upstream that writes only when its socket accepts more. The proxy runs as a',
  'child process, so its RSS is its own.',
  '',
  '| stream | client read | upstream sent after 1 s | upstream sent at the end | upstream blocked | upstream closed after client left |',
  '|---|---|---|---|---|---|',
  ...slow.results.map(
    (r) =>
      `| ${r.mode} | ${r.clientBytes} B | ${mb(r.upstreamSent.at1s)} MB | ${mb(r.upstreamSent.end)} MB of ${mb(r.streamBytes)} MB | ${r.upstreamBlocked ? 'yes' : 'no'} | ${r.upstreamClosedMs === undefined ? 'not within 2 s' : `${r.upstreamClosedMs} ms`} |`,
  ),
  '',
  `Proxy RSS: ${mb(slow.proxyRss.start)} MB at rest, ${mb(slow.proxyRss.at1s)} MB after 1 s, ${mb(slow.proxyRss.peak)} MB peak, ${mb(slow.proxyRss.end)} MB at the end.`,
  'What the upstream managed to send is what the kernel buffers along the way hold; after that it moves only as fast as the client reads.',
  '',
);

p(
  '## Load with injected faults',
  '',
  `${load.concurrency} concurrent clients for ${load.durationMs / 1000} s (keep-alive), the proxy as a child process, the fake upstream streaming`,
  `4–15 tokens 5–24 ms apart. ${Math.round(sizes.load.faultRate * 100)}% of requests get a fault, evenly among: ${FAULT_KINDS.join(', ')}.`,
  '',
  '| upstream did | requests |',
  '|---|---|',
  ...Object.entries(load.byUpstreamKind)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `| ${k} | ${v} |`),
  '',
  '| client saw | requests |',
  '|---|---|',
  ...Object.entries(load.byOutcome).map(([k, v]) => `| ${k} | ${v} |`),
  '',
  `${load.requests} requests; the proxy logged ${load.logged} (by status: ${Object.entries(load.loggedByStatus).map(([k, v]) => `${k} × ${v}`).join(', ')}).`,
  `Healthy streams took ${load.latencyMs.p50} ms (median), ${load.latencyMs.p99} ms (p99), ${load.latencyMs.max} ms (max) end to end.`,
  `Proxy log lines at warn or above: ${load.badLogs.length}; stderr: ${load.stderr === '' ? 'empty' : `\`${cell(load.stderr.slice(0, 200))}\``};`,
  `still running afterwards: ${load.proxyAlive ? 'yes' : 'no'}. Proxy RSS ${mb(load.proxyRss.start)} MB at rest, then at each tenth of the run`,
  `${load.rssTimeline.map((b) => mb(b)).join(', ')} MB (${mb(load.proxyRss.end)} MB at the end): ${levelsOff(load.rssTimeline) ? 'it levels off with the number of open streams rather than climbing with the requests served' : '**it keeps climbing over the second half of the run**'}.`,
  '',
);

p(
  '## SSE reader and relay fuzz',
  '',
  `${fuzz.inputs} inputs (${fuzz.bytes} bytes; half random bytes biased to \`\\r \\n : e r o d a t\`, half token soup of SSE fields,`,
  'JSON payloads, line ends, BOMs and cut UTF-8), each fed whole, in random pieces of 0–8 bytes and (every eighth short one) byte',
  'by byte. The reader must give the same events as a string-splitting model; the relay the same bytes as a model that rewrites',
  `whole \`error:\` lines, and the same endedWell(). ${fuzz.feedings} feedings, ${fuzz.events} events, ${fuzz.exceptions} exceptions,`,
  `${fuzz.failureCount} counterexamples, ${fuzz.ms} ms.`,
  '',
  `A long stream of ${mb(stream.bytes)} MB (twice) through one reader and one relay in pieces of up to 4 KiB: heap + buffers after GC`,
  `with both alive ${mb(retained(stream.memory.quarter))} MB after a quarter, ${mb(retained(stream.memory.end))} MB at the end; endedWell() ${stream.endedWell.whenDone} after [DONE], ${stream.endedWell.whenCut} when cut mid-answer.`,
  '',
  `Healthy streams whose final event is longer than the relay's tail window (256 bytes here; \`maxHoldBytes\` in the proxy):`,
  `${longFinal.misjudged} of ${longFinal.trials} judged as not ended well.`,
  '',
);

p('## Findings', '');
if (findings.length === 0) p('Every check passed.', '');
else {
  p('Checks that failed in this run (each is asserted by a test in test/reliability, which fails until it is fixed):', '');
  for (const f of findings) p(`- **${cell(f.where)}**: ${cell(f.what.slice(0, 600))}`);
  p('');
}

writeFileSync(out, lines.join('\n'));
log(`wrote ${relative(process.cwd(), out)}: ${faults.length} faults (${faultsPassed} clean), ${requests} requests, ${leakTotal} leaks, ${findings.length} findings`);
