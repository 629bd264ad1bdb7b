import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { projectRoot } from './project-root.js';

export const LLAMA_SERVER_INSTALL_HINT =
  "llama-server not found: install llama.cpp's llama-server or set LLAMA_SERVER " +
  '(on Debian/x86_64, `bash scripts/install-llama-server` installs it into .cache/llama-server/)';

/** Where scripts/install-llama-server puts its wrapper. */
export function installedLlamaServerPath(): string {
  return join(projectRoot(), '.cache', 'llama-server', 'bin', 'llama-server');
}

/**
 * The llama-server executable to run, in order of preference: $LLAMA_SERVER,
 * `llama-server` on PATH, then the project's own install. Only looks; never
 * installs anything.
 */
export function findLlamaServer(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const fromEnv = env.LLAMA_SERVER;
  if (fromEnv && isExecutableFile(fromEnv)) return fromEnv;
  const onPath = searchPath('llama-server', env.PATH ?? '');
  if (onPath) return onPath;
  const installed = installedLlamaServerPath();
  return isExecutableFile(installed) ? installed : undefined;
}

function searchPath(name: string, pathVar: string): string | undefined {
  for (const dir of pathVar.split(delimiter)) {
    // An empty PATH entry means the current directory, which we don't want to pick up by accident.
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

function isExecutableFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * findLlamaServer(), or else install it with scripts/install-llama-server (Debian x86_64; its progress
 * goes to stderr) and return what that printed as its last line. Throws with the install hint if neither works.
 */
export function ensureLlamaServer(): string {
  const found = findLlamaServer();
  if (found !== undefined) return found;
  const r = spawnSync('bash', [join(projectRoot(), 'scripts', 'install-llama-server')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const path = r.stdout?.trim().split('\n').pop();
  if (r.status !== 0 || !path) throw new Error(LLAMA_SERVER_INSTALL_HINT);
  return path;
}
