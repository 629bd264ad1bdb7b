// The supervised llama-server killed (kill -9) 20 times while 8 clients keep streaming through the proxy:
// every request must end in one of the outcomes the README promises for a dying upstream (a whole stream,
// a stream ended by the proxy's error frame, 503 + Retry-After while not ready, 502 when the child is gone
// at connect time), none may hang, and the proxy must count exactly 20 crash restarts, keep serving, and
// leave no llama-server behind when stopped.
import t from 'tap';
import { longContextModel } from '../helpers/e2e.js';
import {
  CHAT_PATH,
  chat,
  childPids,
  isAlive,
  leftovers,
  llamaServerPath,
  sleep,
  startSupervised,
  waitStatus,
  type ChildProxy,
} from '../helpers/supervised.js';

const KILLS = 20;
const WORKERS = 8;
// Far above a 16-token stream (plus the 2 s ready wait) on a loaded machine: only a hang reaches it.
const CLIENT_TIMEOUT_MS = 15_000;
// Short backoff so 20 restarts fit well inside the test's time; a high crash-loop limit so the 20 kills
// within the window are not taken for a crash loop.
const PROXY_ARGS = [
  '--restart-backoff-initial-ms', '100',
  '--restart-backoff-max-ms', '300',
  '--crash-loop-max-starts', '100',
  '--ready-wait-ms', '2000',
  '--drain-timeout-ms', '2000',
];
// The 32k tiny model so -c 2048 is within its training context; 4 slots so the 8 workers overlap on it.
const CHILD = ['--', llamaServerPath(), '-m', longContextModel(), '-c', '2048', '-np', '4'];
const STREAM = chat({ max_tokens: 16, stream: true });

type Kind = 'done' | 'errorFrame' | 'notReady503' | 'badGateway502' | 'hung' | 'unexpected';

interface LastEvent {
  error?: { code?: unknown; type?: unknown };
  choices?: Array<{ finish_reason?: unknown }>;
}

function parse(text: string): LastEvent | undefined {
  try {
    return JSON.parse(text) as LastEvent;
  } catch {
    return undefined;
  }
}

function lastData(body: string): string | undefined {
  const data = body
    .split('\n')
    .filter((line) => line.startsWith('data: '))
    .map((line) => line.slice('data: '.length));
  return data.at(-1);
}

/** One streamed chat completion, classified by how it ended; `detail` says why when unexpected. */
async function oneRequest(url: string): Promise<{ kind: Kind; detail?: string }> {
  try {
    const res = await fetch(`${url}${CHAT_PATH}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(STREAM),
      signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
    });
    // The timeout signal covers the body too, so a stream that never ends throws here as well.
    const body = await res.text();
    if (res.status === 200) {
      const last = lastData(body);
      if (last === '[DONE]') return { kind: 'done' };
      const frame = parse(last ?? '');
      // Killed between its finish chunk and `data: [DONE]`: the generation is whole, and the proxy counts a
      // final event as a proper end (seen once in ~17 runs).
      if (typeof frame?.choices?.[0]?.finish_reason === 'string') return { kind: 'done' };
      if (typeof frame?.error?.code === 'string' && frame.error.code.startsWith('upstream_')) return { kind: 'errorFrame' };
      return { kind: 'unexpected', detail: `200 ending ${String(last)}` };
    }
    const json = parse(body);
    if (res.status === 503 && res.headers.get('retry-after') !== null && json?.error?.type === 'unavailable_error' && json.error.code === 'upstream_not_ready') {
      return { kind: 'notReady503' };
    }
    if (res.status === 502 && typeof json?.error?.code === 'string' && json.error.code.startsWith('upstream_')) {
      return { kind: 'badGateway502' };
    }
    return { kind: 'unexpected', detail: `${res.status} ${res.headers.get('retry-after') ?? '-'} ${body.slice(0, 300)}` };
  } catch (err) {
    if (err instanceof Error && err.name === 'TimeoutError') return { kind: 'hung' };
    return { kind: 'unexpected', detail: `fetch failed: ${String(err)} ${String((err as { cause?: unknown }).cause)}` };
  }
}

/**
 * The pid of the n-th llama-server, polled. Not nthChildPid: its waitForLog runs the childPids scan (all
 * log lines) for every line of a log that grows by thousands of llama-server lines here, which starves
 * the test process for seconds.
 */
async function nthPid(proxy: ChildProxy, n: number, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const pids = childPids(proxy);
    if (pids.length >= n) return pids[n - 1] ?? -1;
    if (Date.now() >= deadline) throw new Error(`llama-server #${n} did not start within ${ms} ms`);
    await sleep(50);
  }
}

t.test(`the child killed ${KILLS} times under load`, async (t) => {
  const started = Date.now();
  const proxy = await startSupervised(PROXY_ARGS, CHILD);
  // A second stop after the one below is a no-op; this one covers a failure half-way.
  t.teardown(() => proxy.stop());
  await waitStatus(proxy.url, '/-/ready', 200, 15_000);

  const counts: Record<Kind, number> = { done: 0, errorFrame: 0, notReady503: 0, badGateway502: 0, hung: 0, unexpected: 0 };
  const unexpected: string[] = [];
  let stopping = false;
  const worker = async (): Promise<void> => {
    while (!stopping) {
      const r = await oneRequest(proxy.url);
      counts[r.kind]++;
      if (r.detail !== undefined && unexpected.length < 10) unexpected.push(r.detail);
    }
  };
  const workers = Array.from({ length: WORKERS }, () => worker());

  try {
    for (let n = 1; n <= KILLS; n++) {
      const pid = await nthPid(proxy, n, 10_000);
      await waitStatus(proxy.url, '/-/ready', 200, 10_000);
      // Let the workers get requests into the fresh child (queued, holding, streaming) before the kill;
      // the varying delay spreads the kills over those phases.
      await sleep(150 + ((n * 37) % 200));
      process.kill(pid, 'SIGKILL');
    }
    await nthPid(proxy, KILLS + 1, 10_000);
    await waitStatus(proxy.url, '/-/ready', 200, 10_000);
  } catch (err) {
    // What the supervisor did, to say why a wait ran out.
    const own = proxy.logs.filter((l) => l.source === undefined && l.msg !== 'request');
    t.comment(own.map((l) => JSON.stringify(l).slice(0, 300)).join('\n'));
    t.comment(`proxy exit=${String(proxy.child.exitCode)} sig=${String(proxy.child.signalCode)} stderr=${proxy.stderr()}`);
    throw err;
  } finally {
    stopping = true;
    await Promise.all(workers);
  }

  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  t.comment(`${total} requests: ${JSON.stringify(counts)}`);
  t.equal(counts.hung, 0, 'no request hung');
  t.equal(counts.unexpected, 0, 'no unexpected outcome', { examples: unexpected });
  // A request that meets the dead child before the supervisor noticed goes again once, when the new child
  // is ready; without that, every kill cost ~5 of these clients a 502 (80–115 per run on a quiet machine).
  // A 502 is still right for a request lost twice (the new child killed before it answered: on a loaded
  // machine a prompt can take longer than the 150–350 ms between ready and kill) and for one that
  // llama-server had answered before it died (during the hold). How many kills land there depends on the
  // machine's speed; what must hold is that no request lost before an answer got a 502 without a retry.
  const gateway = proxy.logs.filter((l) => l.msg === 'request' && l.status === 502);
  const beforeAnswer = gateway.filter((l) => l.upstreamStatus === undefined);
  const notRetried = beforeAnswer.filter((l) => l.retried !== true);
  t.comment(`502s: ${gateway.length - beforeAnswer.length} during the hold, ${beforeAnswer.length} before an answer (each sent again once)`);
  t.equal(gateway.length, counts.badGateway502, "every 502 the clients saw is in the proxy's log");
  t.equal(notRetried.length, 0, 'every request lost before an answer was sent again before it got a 502', { examples: notRetried.slice(0, 3) });
  t.ok(proxy.logs.some((l) => l.msg === 'request' && l.retried === true && l.status === 200), 'retried requests were served');
  t.ok(counts.done > 0, 'streams completed between the kills');

  t.equal(proxy.child.exitCode, null, 'the proxy is still running');
  const final = await oneRequest(proxy.url);
  t.same(final, { kind: 'done' }, 'a final request is served whole');

  const pids = childPids(proxy);
  t.equal(pids.length, KILLS + 1, 'one llama-server per kill, plus the first');
  const crashes = proxy.logs.filter((l) => l.msg === 'llama-server exited with signal SIGKILL; restarting' && l.reason === 'crashed');
  t.equal(crashes.length, KILLS, 'each kill logged as a crash restart');
  const metrics = await (await fetch(`${proxy.url}/-/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  t.match(metrics, new RegExp(`^llama_status_proxy_upstream_restarts_total\\{reason="crashed"\\} ${KILLS}$`, 'm'), 'the restarts are counted');

  await proxy.stop();
  t.equal(await proxy.exited, 0, 'SIGTERM: the proxy exits 0');
  t.same(pids.filter(isAlive), [], 'no llama-server of this test is left');
  t.same(leftovers(proxy), [], 'nothing of this proxy in the process table');
  t.comment(`wall time ${Date.now() - started} ms`);
});
