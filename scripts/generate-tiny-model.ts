// Usage: node dist/scripts/generate-tiny-model.js [path]
// Writes the tiny test model (default .cache/models/tiny.gguf) and prints its path.
import { resolve } from 'node:path';
import { defaultTinyModelPath, writeTinyModel } from '../src/tiny-model/ensure.js';

const target = process.argv[2] ? resolve(process.argv[2]) : defaultTinyModelPath();
const result = writeTinyModel(target);
process.stderr.write(`${result.written ? 'wrote' : 'up to date'}: sha256 ${result.sha256}\n`);
process.stdout.write(`${result.path}\n`);
