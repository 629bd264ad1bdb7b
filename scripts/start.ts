// `npm start`: the main job on the embedded default. The proxy supervises llama-server (installed by
// scripts/install-llama-server if it is not on this machine) running the generated tiny model, on
// 127.0.0.1:8080. Extra arguments go to the proxy: `npm start -- --port 9000`.
import { ensureLlamaServer } from '../src/llama-server-binary.js';
import { ensureTinyModel } from '../src/tiny-model/ensure.js';
import { main } from '../src/cli.js';

const model = ensureTinyModel();
const args = [...process.argv.slice(2), '--', ensureLlamaServer(), '-m', model, '-c', '2048', '--host', '127.0.0.1', '--port', '8080'];
const port = process.argv.includes('--port') ? process.argv[process.argv.indexOf('--port') + 1] : '8080';
process.stderr.write(
  `\nllama-status-proxy on http://127.0.0.1:${port}, supervising llama-server with ${model}\n` +
    `try:\n  curl -sN http://127.0.0.1:${port}/v1/chat/completions -H 'Content-Type: application/json' \\\n` +
    `    -d '{"messages":[{"role":"user","content":"Hello"}],"stream":true,"max_tokens":16}'\n\n`,
);
process.exitCode = await main(args);
