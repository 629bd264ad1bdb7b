// A llama-server that cannot start (a bad model path): each exit is logged with its code and
// llama-server's last words, restarts come after growing delays, and after crashLoopMaxStarts failures
// the supervisor stops trying. The proxy stays up answering 503, or exits 1 with --exit-on-crash-loop.
import t from 'tap';
import {
  chat,
  childPids,
  getStatus,
  isAlive,
  llamaServerPath,
  ownLogs,
  post,
  privatePort,
  sleep,
  startSupervised,
  within,
  type LogLine,
} from '../helpers/supervised.js';

// With an API key for llama-server, which must not reach the log with its command line.
const SECRET = 'sk-crash-loop-test-secret';
const BAD_MODEL = ['--', llamaServerPath(), '-m', 'does-not-exist.gguf', '-c', '256', '--api-key', SECRET];
const BACKOFF = ['--restart-backoff-initial-ms', '100', '--restart-backoff-max-ms', '400', '--crash-loop-max-starts', '3'];
const CRASH_LOOP = 'llama-server exited with code 1; crash loop: not restarting';

function failures(lines: LogLine[]): LogLine[] {
  return lines.filter((l) => l.reason === 'exited-during-startup');
}

t.test('bad model path: logged exits, growing delays, then the crash-loop stop', async (t) => {
  const proxy = await startSupervised(BACKOFF, BAD_MODEL);
  t.teardown(() => proxy.stop());
  await proxy.waitForLog((l) => l.msg === CRASH_LOOP, 15_000);

  const logs = ownLogs(proxy);
  const failed = failures(logs);
  t.equal(childPids(proxy).length, 3, 'three starts');
  t.same(
    failed.map((l) => l.msg),
    ['llama-server exited with code 1; restarting', 'llama-server exited with code 1; restarting', CRASH_LOOP],
    'each exit is logged with its code',
  );
  t.same(failed.map((l) => l.level), [40, 40, 50], 'restarts are warnings, the crash loop an error');
  for (const line of failed) {
    const lastLines = (line.lastLines as string[] | undefined)?.join('\n') ?? '';
    t.match(lastLines, /failed to open GGUF file 'does-not-exist\.gguf'/, "llama-server's own reason is in the log line");
    t.match(lastLines, /exiting due to model loading error/);
  }
  t.same(failed.map((l) => l.failuresInWindow), [1, 2, 3]);

  const [first, second] = failed.map((l) => Number(l.delayMs));
  t.ok(first !== undefined && first >= 80 && first <= 120, `first delay ${first} ms: 100 ms ±20 %`);
  t.ok(second !== undefined && second >= 160 && second <= 240, `second delay ${second} ms: 200 ms ±20 %`);
  t.ok((second ?? 0) > (first ?? Infinity), 'the delay grows');
  t.equal(failed[2]?.delayMs, undefined, 'no delay after the last: no restart');
  t.same(
    logs.find((l) => l.msg === 'llama-server starting')?.args,
    ['-m', 'does-not-exist.gguf', '-c', '256', '--api-key', '[redacted]', '--host', '127.0.0.1', '--port', String(privatePort(proxy))],
    'the command line is logged, its API key hidden',
  );
  t.notOk(proxy.logs.some((l) => JSON.stringify(l).includes(SECRET)), 'the API key is in no log line');

  // A restart never comes before its delay.
  const starts = logs.filter((l) => l.msg === 'llama-server starting').map((l) => Date.parse(String(l.time)));
  const fails = failed.map((l) => Date.parse(String(l.time)));
  t.ok((starts[1] ?? 0) - (fails[0] ?? 0) >= (first ?? 0) - 2, 'second start after the first delay');
  t.ok((starts[2] ?? 0) - (fails[1] ?? 0) >= (second ?? 0) - 2, 'third start after the second delay');

  await t.test('after the crash loop: /-/ready 503, API 503, no more starts', async (t) => {
    const ready = await getStatus(proxy.url, '/-/ready');
    t.equal(ready.status, 503);
    t.same(JSON.parse(ready.body), { status: 'not ready', upstream: 'crash-loop' });

    const res = await post(proxy.url, chat());
    t.equal(res.status, 503);
    t.equal(res.headers.get('retry-after'), '5');
    t.match(await res.json(), { error: { type: 'unavailable_error', code: 'upstream_not_ready', message: /crash-loop/ } });

    // Longer than the longest delay (400 ms + 20 %) this policy could have chosen.
    await sleep(600);
    t.equal(childPids(proxy).length, 3, 'still three starts');
    t.equal((await getStatus(proxy.url, '/-/ready')).status, 503, '/-/ready stays 503');
    t.notOk(childPids(proxy).some(isAlive), 'no llama-server left running');

    const metrics = await (await fetch(`${proxy.url}/-/metrics`)).text();
    t.match(metrics, /^llama_status_proxy_upstream_restarts_total\{reason="exited-during-startup"\} 2$/m, 'two restarts, not three');
    t.match(metrics, /^llama_status_proxy_upstream_state\{state="crash-loop"\} 1$/m);
  });

  await t.test('without --exit-on-crash-loop the proxy stays up until told to stop', async (t) => {
    t.equal(proxy.child.exitCode, null);
    await proxy.stop();
    t.equal(await proxy.exited, 0);
  });
});

t.test('--exit-on-crash-loop: the proxy exits 1 on its own', async (t) => {
  const proxy = await startSupervised(['--exit-on-crash-loop', ...BACKOFF], BAD_MODEL);
  t.teardown(() => proxy.stop());
  const code = await within(proxy.exited, 15_000);
  t.equal(code, 1);
  t.ok(ownLogs(proxy).some((l) => l.msg === 'giving up' && l.level === 60), 'a fatal "giving up" line');
  t.equal(childPids(proxy).length, 3);
  t.notOk(childPids(proxy).some(isAlive), 'no llama-server left running');
});
