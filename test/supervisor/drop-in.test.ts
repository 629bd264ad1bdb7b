// The drop-in command line: put `llama-status-proxy --` in front of the llama-server command you already
// use, and the address you gave llama-server becomes the proxy's, while llama-server moves to a private
// loopback port.
import t from 'tap';
import { argsForLog, rewriteChildCommandLine } from '../../src/supervisor/command-line.js';
import { freePort } from '../helpers/llama-server.js';
import { CLI } from '../helpers/proxy.js';
import {
  chat,
  childCommand,
  cmdline,
  listeningPorts,
  nthChildPid,
  post,
  privatePort,
  spawnExact,
  startSupervised,
  waitStatus,
  type ChildProxy,
} from '../helpers/supervised.js';

async function checkDropIn(t: Tap, proxy: ChildProxy, port: number): Promise<void> {
  t.equal(proxy.url, `http://127.0.0.1:${port}`, 'the proxy listens on the port given to llama-server');
  const childPid = await nthChildPid(proxy, 1);
  await waitStatus(proxy.url, '/-/ready', 200);
  const ready = await fetch(`${proxy.url}/-/ready`);
  t.same(await ready.json(), { status: 'ready', upstream: 'ready' }, "the proxy's own endpoint answers on that port");

  const inner = privatePort(proxy);
  t.ok(inner !== undefined && inner !== port, `llama-server is on a private port (${inner}), shown in the log`);
  t.same(listeningPorts(childPid), [inner], `llama-server listens on ${inner} only, not on ${port}`);
  t.match(cmdline(childPid), new RegExp(`--host 127\\.0\\.0\\.1 --port ${inner}\\s*$`), 'its command line ends with our address');
  t.notMatch(cmdline(childPid), new RegExp(`--port ${port}\\b`));

  const res = await post(proxy.url, chat());
  t.equal(res.status, 200, 'a chat completion through the port');
  await res.body?.cancel();
}

type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

t.test('-- llama-server … --host 127.0.0.1 --port P: the proxy takes P', async (t) => {
  const port = await freePort();
  const proxy = await startSupervised([], childCommand(['--host', '127.0.0.1', '--port', String(port)]));
  t.teardown(() => proxy.stop());
  await checkDropIn(t, proxy, port);
});

t.test('LLAMA_ARG_PORT=P in the environment works the same', async (t) => {
  const port = await freePort();
  // Exactly these arguments: no --port anywhere, for the proxy or for llama-server.
  const proxy = await spawnExact(CLI, ['--health-interval-ms', '500', ...childCommand()], {
    LLAMA_ARG_HOST: '127.0.0.1',
    LLAMA_ARG_PORT: String(port),
  });
  t.teardown(() => proxy.stop());
  await checkDropIn(t, proxy, port);
});

t.test('rewriteChildCommandLine', async (t) => {
  t.test('--port=8080 and --host=0.0.0.0 become ours; the rest stays, in order', async (t) => {
    const args = ['-m', 'model.gguf', '--port=8080', '-c', '256', '--host=0.0.0.0', '--alias=a=b', '-ngl', '99', '--api-key', 'k'];
    const r = rewriteChildCommandLine(args, {}, 41000);
    t.same(r.args, ['-m', 'model.gguf', '-c', '256', '--alias=a=b', '-ngl', '99', '--api-key', 'k', '--host', '127.0.0.1', '--port', '41000']);
    t.equal(r.host, '0.0.0.0');
    t.equal(r.port, '8080');
  });

  t.test('--port 8080 --host ::, as separate words', async (t) => {
    const r = rewriteChildCommandLine(['--host', '::', '-m', 'x.gguf', '--port', '8080'], {}, 41000);
    t.same(r.args, ['-m', 'x.gguf', '--host', '127.0.0.1', '--port', '41000']);
    t.equal(r.host, '::');
    t.equal(r.port, '8080');
  });

  t.test('LLAMA_ARG_HOST/PORT are taken from the environment and not passed on; the rest of it is', async (t) => {
    const r = rewriteChildCommandLine(['-m', 'x.gguf'], { LLAMA_ARG_HOST: '0.0.0.0', LLAMA_ARG_PORT: '9000', LLAMA_ARG_CTX_SIZE: '512', PATH: '/bin' }, 41000);
    t.equal(r.host, '0.0.0.0');
    t.equal(r.port, '9000');
    t.same(r.env, { LLAMA_ARG_CTX_SIZE: '512', PATH: '/bin' });
    t.same(r.args, ['-m', 'x.gguf', '--host', '127.0.0.1', '--port', '41000']);
  });

  t.test('the command line wins over the environment, as in llama-server', async (t) => {
    const r = rewriteChildCommandLine(['--port', '9001'], { LLAMA_ARG_PORT: '9000' }, 41000);
    t.equal(r.port, '9001');
  });

  t.test('argsForLog hides secrets, whichever way they are written, and nothing else', async (t) => {
    const args = ['-m', 'x.gguf', '--api-key', 'k1', '--api-key=k2', '-hft', 'h1', '--hf-token=h2', '--api-key-file', 'keys.txt'];
    t.same(argsForLog(args), [
      '-m',
      'x.gguf',
      '--api-key',
      '[redacted]',
      '--api-key=[redacted]',
      '-hft',
      '[redacted]',
      '--hf-token=[redacted]',
      '--api-key-file',
      'keys.txt',
    ]);
  });

  t.test('no address given: none taken', async (t) => {
    const r = rewriteChildCommandLine(['-m', 'x.gguf'], {}, 41000);
    t.equal(r.host, undefined);
    t.equal(r.port, undefined);
  });
});
