// The proxy takes undici's Pool and connector from internal paths to keep undici's index out of memory
// (src/proxy/undici-parts.ts). An undici upgrade that moves or changes that file must fail here.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { Pool as PublicPool, buildConnector as publicBuildConnector } from 'undici';
import { projectRoot } from '../../src/project-root.js';
import { buildConnector, Pool } from '../../src/proxy/undici-parts.js';

t.equal(Pool, PublicPool, "the internal path is undici's own Pool");
t.equal(buildConnector, publicBuildConnector, "the internal path is undici's own buildConnector");

t.test("the CLI's modules do not load undici's index", async (t) => {
  // A child process: this test has loaded the index itself.
  const cli = join(projectRoot(), 'dist', 'src', 'cli.js');
  const script = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(cli)});
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    process.stdout.write(JSON.stringify(loaded.filter((f) => f.includes('undici'))));`;
  const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
  t.ok(loaded.some((f) => f.endsWith(join('undici', 'lib', 'dispatcher', 'pool.js'))), 'the Pool is loaded');
  t.ok(loaded.some((f) => f.endsWith(join('undici', 'lib', 'core', 'connect.js'))), 'the connector is loaded');
  t.notOk(loaded.some((f) => f.endsWith(join('undici', 'index.js'))), 'the index is not');
});
