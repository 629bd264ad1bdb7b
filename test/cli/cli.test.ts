// The built CLI as a user runs it: exact flags, exit codes, --help, signals.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CLI, startProxyCli } from '../helpers/proxy.js';
import { OPTIONS, flagName, type OptionKey } from '../../src/config.js';

function run(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('--help lists every option with its default, and exits 0', async (t) => {
  const r = run(['--help']);
  t.equal(r.status, 0);
  for (const key of Object.keys(OPTIONS) as OptionKey[]) {
    const spec = OPTIONS[key];
    if (!('placeholder' in spec) && spec.kind.type !== 'bool') continue;
    t.match(r.stdout, `--${flagName(key)}`, key);
  }
  t.match(r.stdout, '(default: 8080)');
  t.match(r.stdout, '(default: 15000)');
});

t.test('--version prints the package version', async (t) => {
  const r = run(['--version']);
  t.equal(r.status, 0);
  t.match(r.stdout.trim(), /^\d+\.\d+\.\d+$/);
});

t.test('bad configuration exits 2 with one line naming the key', async (t) => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--upstream', 'http://127.0.0.1:1', '--port', '65536'], {}, /port: expected an integer from 0 to 65535/],
    [['--upstream', 'not a url'], {}, /upstream: expected an http/],
    [['--upstream', 'http://127.0.0.1:1', '--bogus'], {}, /unknown option '--bogus'/],
    [[], {}, /upstream: required/],
    [['--upstream', 'http://127.0.0.1:1'], { LLAMA_STATUS_PROXY_MAX_HOLD_BYTES: 'lots' }, /maxHoldBytes: .*LLAMA_STATUS_PROXY_MAX_HOLD_BYTES/],
    [['--config', '/nonexistent/x.json', '--upstream', 'http://127.0.0.1:1'], {}, /config: cannot read/],
  ];
  for (const [args, env, message] of cases) {
    const r = run(args, env);
    t.equal(r.status, 2, args.join(' '));
    t.match(r.stderr, message);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
});

// How fast it starts is measured by `npm run bench`, not asserted here: a loaded CI machine would make a
// timed test flaky without telling us anything.
t.test('starts with exactly `--upstream URL --port N`, answers on that port, exits 0 on SIGTERM', async (t) => {
  const upstream: Server = createServer((req, res) => res.end(`upstream saw ${req.method} ${req.url}`));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  t.teardown(() => upstream.close());
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const proxy = await startProxyCli(['--upstream', `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, '--port', String(port)]);
  const res = await fetch(`http://127.0.0.1:${port}/props?x=1`);
  t.equal(res.status, 200);
  t.equal(await res.text(), 'upstream saw GET /props?x=1');
  proxy.child.kill('SIGTERM');
  t.equal(await proxy.exited, 0, 'exit code 0 after SIGTERM');
  t.ok(proxy.logs.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM'));
});
