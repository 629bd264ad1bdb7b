// `npm start`: the main job on the embedded default. The proxy supervises llama-server (installed by
// scripts/install-llama-server if it is not on this machine) running the generated tiny model, on
// 127.0.0.1:8080. Extra arguments go to the proxy: `npm start -- --port 9000`.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { findLlamaServer, LLAMA_SERVER_INSTALL_HINT } from '../src/llama-server-binary.js';
import { projectRoot } from '../src/project-root.js';
import { ensureTinyModel } from '../src/tiny-model/ensure.js';
import { main } from '../src/cli.js';

function llamaServer(): string {
  const found = findLlamaServer();
  if (found !== undefined) return found;
  const r = spawnSync('bash', [join(projectRoot(), 'scripts', 'install-llama-server')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const path = r.stdout.trim().split('\n').pop();
  if (r.status !== 0 || !path) throw new Error(LLAMA_SERVER_INSTALL_HINT);
  return path;
}

const model = ensureTinyModel();
const args = [...process.argv.slice(2), '--', llamaServer(), '-m', model, '-c', '2048', '--host', '127.0.0.1', '--port', '8080'];
const port = process.argv.includes('--port') ? process.argv[process.argv.indexOf('--port') + 1] : '8080';
process.stderr.write(
  `\nllama-status-proxy on http://127.0.0.1:${port}, supervising llama-server with ${model}\n` +
    `try:\n  curl -sN http://127.0.0.1:${port}/v1/chat/completions -H 'Content-Type: application/json' \\\n` +
    `    -d '{"messages":[{"role":"user","content":"Hello"}],"stream":true,"max_tokens":16}'\n\n`,
);
process.exitCode = await main(args);
