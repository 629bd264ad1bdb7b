// `npm start`, the embedded default: the proxy supervising llama-server on the generated tiny model.
// It must come up, answer, and on SIGTERM exit 0 without leaving llama-server behind.
import t from 'tap';
import { join } from 'node:path';
import { projectRoot } from '../../src/project-root.js';
import { freePort } from '../helpers/llama-server.js';
import { chat, leftovers, nthChildPid, post, spawnExact, waitGone, waitStatus, within } from '../helpers/supervised.js';

// What `npm start` runs after its prestart build.
const START = join(projectRoot(), 'dist', 'scripts', 'start.js');

t.test('npm start: comes up, answers a chat completion, SIGTERM exits 0 with no orphans', async (t) => {
  const port = await freePort();
  const proxy = await spawnExact(START, ['--port', String(port)]);
  t.teardown(() => proxy.stop());
  t.equal(proxy.url, `http://127.0.0.1:${port}`);
  t.match(proxy.stderr(), `llama-status-proxy on http://127.0.0.1:${port}`, 'the banner names the address');

  const childPid = await nthChildPid(proxy, 1);
  await waitStatus(proxy.url, '/-/ready', 200, 60_000);
  const res = await post(proxy.url, chat());
  t.equal(res.status, 200);
  t.match(await res.json(), { object: 'chat.completion', choices: [{ message: { role: 'assistant' } }] });

  proxy.child.kill('SIGTERM');
  t.equal(await within(proxy.exited, 30_000), 0, 'exit 0');
  t.ok(await waitGone(childPid, 2_000), 'llama-server is gone');
  t.same(leftovers(proxy), [], 'nothing left in the process table');
});
