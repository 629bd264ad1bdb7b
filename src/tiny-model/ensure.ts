import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { projectRoot } from '../project-root.js';
import { buildTinyLlamaGguf, type TinyLlamaOptions } from './tiny-llama.js';

export function defaultTinyModelPath(): string {
  return join(projectRoot(), '.cache', 'models', 'tiny.gguf');
}

export interface WriteResult {
  path: string;
  /** False when the file already held exactly these bytes. */
  written: boolean;
  sha256: string;
}

/**
 * Writes the tiny model unless the file already has the same content.
 * Comparing hashes, not just existence, replaces a model left by an older
 * generator. The rename makes concurrent callers (parallel test files) safe:
 * a reader sees the old file or the new one, never half of one.
 */
export function writeTinyModel(path: string = defaultTinyModelPath(), opts: TinyLlamaOptions = {}): WriteResult {
  const bytes = buildTinyLlamaGguf(opts);
  const sha256 = sha256Hex(bytes);
  if (existingSha256(path) === sha256) return { path, written: false, sha256 };
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
  return { path, written: true, sha256 };
}

/** The tiny model's path, generated first if missing or stale. */
export function ensureTinyModel(path?: string): string {
  return writeTinyModel(path).path;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function existingSha256(path: string): string | undefined {
  try {
    return sha256Hex(readFileSync(path));
  } catch {
    return undefined;
  }
}
