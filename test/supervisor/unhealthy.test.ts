// A llama-server that hangs (SIGSTOP: it still accepts connections but never answers) is found by the
// health check and replaced; the hung one is killed, so no SIGCONT is ever needed.
import t from 'tap';
import { chat, childPids, isAlive, nthChildPid, ownLogs, post, startSupervised, waitStatus } from '../helpers/supervised.js';

const HEALTH = ['--health-interval-ms', '300', '--health-timeout-ms', '300', '--health-failure-threshold', '2'];
// A short grace: a stopped process cannot act on SIGTERM, so it is the SIGKILL after the grace that ends it.
const RESTART = ['--stop-grace-ms', '500', '--restart-backoff-initial-ms', '100'];

t.test('a hung llama-server is detected by the health check, killed and replaced', async (t) => {
  const proxy = await startSupervised([...HEALTH, ...RESTART]);
  t.teardown(() => proxy.stop());
  const firstPid = await nthChildPid(proxy, 1);
  await waitStatus(proxy.url, '/-/ready', 200);

  process.kill(firstPid, 'SIGSTOP');
  const restarting = await proxy.waitForLog((l) => l.msg === '2 health checks failed in a row; restarting', 10_000);
  t.equal(restarting.reason, 'unhealthy');
  const checks = ownLogs(proxy).filter((l) => l.msg === 'llama-server health check failed');
  t.same(
    checks.map((l) => [l.level, l.health, l.failures]),
    [
      [40, 'down', 1],
      [40, 'down', 2],
    ],
    'two failed checks logged before the restart',
  );

  const secondPid = await nthChildPid(proxy, 2, 10_000);
  t.not(secondPid, firstPid, 'a new pid');
  t.notOk(isAlive(firstPid), 'the hung llama-server was killed, no SIGCONT needed');
  await waitStatus(proxy.url, '/-/ready', 200);
  const res = await post(proxy.url, chat());
  t.equal(res.status, 200, 'serves again');
  await res.body?.cancel();
  t.same(childPids(proxy), [firstPid, secondPid]);
});
