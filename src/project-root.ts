import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'llama-status-proxy';

/**
 * The repository root, found by walking up to our own package.json. Walking
 * up (rather than a fixed "../..") works both for compiled modules under
 * dist/src/… and for source files run directly, at any folder depth.
 */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (isOurPackage(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  // Compiled layout fallback: dist/src/project-root.js is two levels down.
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

function isOurPackage(file: string): boolean {
  if (!existsSync(file)) return false;
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, 'utf8'));
    return typeof parsed === 'object' && parsed !== null && 'name' in parsed && parsed.name === PACKAGE_NAME;
  } catch {
    return false;
  }
}
