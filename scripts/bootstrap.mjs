// Makes `npm start` and `npm test` work on a fresh clone with nothing but Node and npm: installs the
// locked dependencies when they are missing, compiles, and (with --llama-server) installs llama-server.
// Plain JavaScript on Node's built-ins only, because it runs before anything else is there.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    console.error(`bootstrap: \`${cmd} ${args.join(' ')}\` failed (${r.status ?? r.signal})`);
    process.exit(1);
  }
}

if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) run(npm, ['ci', '--no-audit', '--no-fund']);
run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', root]);
if (process.argv.includes('--llama-server')) run('bash', [join(root, 'scripts', 'install-llama-server')]);
