// SIGKILL to the proxy gives it no chance to stop llama-server; the kernel must (pdeathsig). Otherwise a
// model-sized process would be left holding memory and a port nobody knows about.
import t from 'tap';
import { leftovers, nthChildPid, startSupervised, waitGone, waitStatus, within } from '../helpers/supervised.js';

t.test('SIGKILL to the proxy: llama-server is gone within 2 s', async (t) => {
  const proxy = await startSupervised([]);
  t.teardown(() => proxy.stop());
  const childPid = await nthChildPid(proxy, 1);
  await waitStatus(proxy.url, '/-/ready', 200);

  proxy.child.kill('SIGKILL');
  t.equal(await within(proxy.exited, 5_000), 'SIGKILL');
  t.ok(await waitGone(childPid, 2_000), `llama-server (pid ${childPid}) gone within 2 s`);
  t.same(leftovers(proxy), [], 'nothing of this proxy left in the process table');
});
