// Configuration: precedence, validation messages that name the key, and the example file kept in step.
import t from 'tap';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, envName, exampleConfig, loadConfig, OPTIONS } from '../../src/config.js';
import { projectRoot } from '../../src/project-root.js';

const dir = mkdtempSync(join(tmpdir(), 'lsp-config-'));
function file(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}
const UP = { upstream: 'http://127.0.0.1:8081' };

t.test('defaults', async (t) => {
  const c = loadConfig({ cli: UP, env: {} });
  t.equal(c.host, '127.0.0.1');
  t.equal(c.port, 8080);
  t.equal(c.firstEventTimeoutMs, 15000);
  t.equal(c.maxHoldBytes, 65536);
  t.equal(c.drainTimeoutMs, 25000);
  t.equal(c.upstream?.href, 'http://127.0.0.1:8081/');
  t.same([...c.setByUser], ['upstream']);
});

t.test('precedence: CLI > env > file > defaults', async (t) => {
  const cfg = file('p.json', JSON.stringify({ upstream: 'http://10.0.0.1:1', port: 1111, host: '::1', maxHoldBytes: 5 }));
  const env = { LLAMA_STATUS_PROXY_PORT: '2222', LLAMA_STATUS_PROXY_HOST: '0.0.0.0' };
  const c = loadConfig({ cli: { port: '3333' }, configFile: cfg, env });
  t.equal(c.port, 3333, 'CLI wins');
  t.equal(c.host, '0.0.0.0', 'env beats file');
  t.equal(c.maxHoldBytes, 5, 'file beats default');
  t.equal(c.upstream?.host, '10.0.0.1:1');
});

t.test('the config file can come from the environment; lists and maps too', async (t) => {
  const cfg = file('s.json', JSON.stringify({ command: 'llama-server', args: ['-m', 'x.gguf'], env: { A: '1' } }));
  const c = loadConfig({ cli: {}, env: { LLAMA_STATUS_PROXY_CONFIG: cfg, LLAMA_STATUS_PROXY_ARGS: '["-m","y.gguf"]' } });
  t.equal(c.command, 'llama-server');
  t.same(c.args, ['-m', 'y.gguf']);
  t.same(c.env, { A: '1' });
});

const bad: Array<[string, () => unknown, RegExp]> = [
  ['port out of range', () => loadConfig({ cli: { ...UP, port: '70000' }, env: {} }), /^invalid configuration: port: expected an integer from 0 to 65535, got "70000" \(from --port\)$/],
  ['port not a number', () => loadConfig({ cli: UP, env: { LLAMA_STATUS_PROXY_PORT: 'http' } }), /^invalid configuration: port: .*"http" \(from LLAMA_STATUS_PROXY_PORT\)$/],
  ['bad URL', () => loadConfig({ cli: { upstream: 'localhost:8081' }, env: {} }), /^invalid configuration: upstream: expected an http:\/\/ or https:\/\/ URL/],
  ['wrong type in file', () => loadConfig({ cli: UP, configFile: file('t.json', '{"port":"8080"}'), env: {} }), /^invalid configuration: port: .*got "8080"/],
  ['unknown key in file', () => loadConfig({ cli: UP, configFile: file('u.json', '{"prot":1}'), env: {} }), /^invalid configuration: prot: unknown key/],
  ['unknown env variable', () => loadConfig({ cli: UP, env: { LLAMA_STATUS_PROXY_PROT: '1' } }), /^invalid configuration: LLAMA_STATUS_PROXY_PROT: unknown environment variable$/],
  ['unreadable file', () => loadConfig({ cli: UP, configFile: join(dir, 'missing.json'), env: {} }), /^invalid configuration: config: cannot read .*missing\.json.*ENOENT/],
  ['file not JSON', () => loadConfig({ cli: UP, configFile: file('n.json', '{port: 1}'), env: {} }), /^invalid configuration: config: .* is not valid JSON/],
  ['no upstream, no command', () => loadConfig({ cli: {}, env: {} }), /^invalid configuration: upstream: required/],
  ['both upstream and command', () => loadConfig({ cli: { ...UP, command: 'llama-server' }, env: {} }), /^invalid configuration: upstream: cannot be combined/],
  ['bad log level', () => loadConfig({ cli: { ...UP, logLevel: 'loud' }, env: {} }), /^invalid configuration: logLevel: expected one of fatal, error/],
  ['negative timeout', () => loadConfig({ cli: { ...UP, firstEventTimeoutMs: '-1' }, env: {} }), /^invalid configuration: firstEventTimeoutMs: expected an integer from 0/],
];

t.test('bad values name the key, what was expected and where it came from', async (t) => {
  for (const [name, fn, message] of bad) {
    t.throws(fn, ConfigError, name);
    try {
      fn();
    } catch (err) {
      t.match((err as Error).message, message, name);
      t.notMatch((err as Error).message, /\n/, `${name}: one line`);
    }
  }
});

t.test('config.example.json holds every option with its default, and loads', async (t) => {
  const path = join(projectRoot(), 'config.example.json');
  const example = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  t.same(example, exampleConfig(), 'regenerate with: node -e "import(\'./dist/src/config.js\').then(m=>console.log(JSON.stringify(m.exampleConfig(),null,2)))"');
  for (const key of Object.keys(OPTIONS)) t.ok(key in example, `${key} is in the example`);
  const c = loadConfig({ cli: {}, configFile: path, env: {} });
  t.equal(c.port, 8080);
});

t.test('README documents every option with its flag or env name', async (t) => {
  const readme = readFileSync(join(projectRoot(), 'README.md'), 'utf8');
  for (const key of Object.keys(OPTIONS) as Array<keyof typeof OPTIONS>) {
    t.match(readme, new RegExp(`\\b${key}\\b`), `${key} in README`);
    t.match(readme, new RegExp(envName(key)), `${envName(key)} in README`);
  }
});
