// SIGTERM to the supervising proxy: it stops taking requests (503), gives the stream in flight
// drainTimeoutMs, ends it with an error frame if it is still running, stops llama-server and exits 0,
// leaving nothing behind in the process table.
import t from 'tap';
import {
  CHAT_PATH,
  chat,
  childCommand,
  isAlive,
  leftovers,
  LONG_STREAM,
  longStreamChildCommand,
  newClientRequest,
  nthChildPid,
  ownLogs,
  post,
  readStream,
  startSupervised,
  waitGone,
  waitStatus,
  within,
  type Answer,
} from '../helpers/supervised.js';

const DRAIN_MS = 1000;
const STOP_GRACE_MS = 2000;
const SHUTDOWN_FRAME = { error: { code: 'shutting_down', message: 'llama-status-proxy is shutting down', type: 'unavailable_error' } };

t.test('SIGTERM with a stream in flight: drain, 503 for new requests, exit 0, nothing left', async (t) => {
  const proxy = await startSupervised(['--drain-timeout-ms', String(DRAIN_MS), '--stop-grace-ms', String(STOP_GRACE_MS)], longStreamChildCommand());
  t.teardown(() => proxy.stop());
  const childPid = await nthChildPid(proxy, 1);
  await waitStatus(proxy.url, '/-/ready', 200);

  const res = await post(proxy.url, LONG_STREAM);
  t.equal(res.status, 200);
  let signalled = false;
  const streamed = readStream(res, () => {
    if (signalled) return;
    signalled = true;
    proxy.child.kill('SIGTERM');
  });
  await proxy.waitForLog((l) => l.msg === 'shutting down');

  await t.test('during the drain: /-/ready 503, a new request 503 with Retry-After', async (t) => {
    const failed = (err: unknown): Answer => ({ status: 0, headers: {}, body: String(err) });
    const ready = await newClientRequest(proxy.url, '/-/ready').catch(failed);
    t.equal(ready.status, 503, `/-/ready: ${ready.body}`);
    t.match(ready.body, '"upstream":"draining"');
    const answer = await newClientRequest(proxy.url, CHAT_PATH, chat()).catch(failed);
    t.equal(answer.status, 503, `new request: ${answer.body}`);
    t.equal(answer.headers['retry-after'], '5');
    t.match(answer.body, /"code":"shutting_down"/);
  });

  await t.test('the stream in flight finishes or gets the shutdown error frame', async (t) => {
    const read = await streamed;
    const last = read.data.at(-1);
    if (last === '[DONE]') t.pass('finished within the drain');
    else t.same(JSON.parse(last ?? 'null'), SHUTDOWN_FRAME, 'ended with the shutdown error frame');
  });

  await t.test('exit 0, llama-server stopped, nothing left in the process table', async (t) => {
    // The bound the options give: the drain, then llama-server's grace, plus start-up slack.
    t.equal(await within(proxy.exited, DRAIN_MS + STOP_GRACE_MS + 5_000), 0);
    t.ok(await waitGone(childPid, 1_000), 'llama-server is gone');
    t.ok(ownLogs(proxy).some((l) => l.msg === 'llama-server stopped'), 'logged: llama-server stopped');
    t.same(leftovers(proxy), [], 'no process of this proxy, its child group or its private port');
  });
});

t.test('SIGTERM while an unhealthy llama-server is being replaced: the pending restart does not hold the exit', async (t) => {
  // A long restart delay: a proxy that waited for it before exiting would be seen.
  const proxy = await startSupervised(
    [
      ...['--health-interval-ms', '300', '--health-timeout-ms', '300', '--health-failure-threshold', '2'],
      ...['--stop-grace-ms', '500', '--restart-backoff-initial-ms', '30000', '--restart-backoff-max-ms', '30000'],
      ...['--drain-timeout-ms', String(DRAIN_MS)],
    ],
    childCommand(),
  );
  t.teardown(() => proxy.stop());
  const childPid = await nthChildPid(proxy, 1);
  await waitStatus(proxy.url, '/-/ready', 200);
  process.kill(childPid, 'SIGSTOP');
  await proxy.waitForLog((l) => l.reason === 'unhealthy', 10_000);
  proxy.child.kill('SIGTERM');
  t.equal(await within(proxy.exited, DRAIN_MS + 500 + 5_000), 0, 'exits 0 within the drain and the grace');
  t.notOk(isAlive(childPid), 'the hung llama-server was killed');
  t.same(leftovers(proxy), []);
});
