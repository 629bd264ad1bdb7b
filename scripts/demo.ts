// `npm run demo`: what a client gets from llama-server directly and through the proxy, case by case, on a
// real llama-server (installed first if this machine has none) and on a byte-exact emulation of b5630.
import type OpenAI from 'openai';
import { ensureLlamaServer } from '../src/llama-server-binary.js';
import { ensureTinyModel } from '../src/tiny-model/ensure.js';
import {
  startLlamaServer,
  TOOL_PARSE_ERROR_REQUEST,
  TOOL_PARSE_ERROR_SERVER_ARGS,
  type RunningLlamaServer,
} from '../test/helpers/llama-server.js';
import { startProxy, type RunningProxy } from '../test/helpers/proxy.js';
import { startFakeUpstream, type FakeUpstream } from '../test/helpers/fake-upstream.js';
import { fixtureById } from '../test/fixtures/catalogue.js';
import { collect, LONG_PROMPT, sdk } from '../test/helpers/e2e.js';

const WIDTH = 100;
const BODY_BYTES = 300;
const KEY_HEADERS = ['content-type', 'content-length', 'x-accel-buffering', 'cache-control', 'x-status-rewritten'];

interface Endpoint {
  label: string;
  url: string;
}

interface Case {
  title: string;
  /** For the summary table. */
  short: string;
  path: '/v1/chat/completions' | '/v1/completions';
  body: Record<string, unknown>;
  direct: Endpoint;
  proxied: Endpoint;
}

interface Seen {
  status: string;
  sdk: string;
}

/** Text cut into lines of the terminal's width, each indented; after a space or comma where there is one. */
function wrap(text: string, indent: string): string {
  const room = WIDTH - indent.length;
  const lines: string[] = [];
  let rest = text;
  while (rest.length > room) {
    const window = rest.slice(0, room);
    const soft = Math.max(window.lastIndexOf(' '), window.lastIndexOf(','));
    const cut = soft > room * 0.6 ? soft + 1 : room;
    lines.push(indent + rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  lines.push(indent + rest);
  return lines.join('\n');
}

/** Line breaks made visible, so an SSE body keeps its event boundaries in a few screen lines. */
function visible(text: string): string {
  return text.replace(/\r/g, '\\r').replace(/\n/g, '\\n');
}

async function raw(endpoint: Endpoint, c: Case): Promise<{ text: string; status: number }> {
  const res = await fetch(`${endpoint.url}${c.path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(c.body),
  });
  const body = Buffer.from(await res.arrayBuffer());
  const out = [`  HTTP ${res.status} ${res.statusText}`];
  for (const name of KEY_HEADERS) {
    const value = res.headers.get(name);
    if (value !== null) out.push(`  ${name}: ${value}`);
  }
  const head = body.subarray(0, BODY_BYTES).toString('utf8');
  const more = body.length > BODY_BYTES ? ` … (${body.length} bytes in all)` : ` (${body.length} bytes)`;
  out.push(wrap(`body: ${visible(head)}${more}`, '  '));
  if (body.length > BODY_BYTES) {
    // In-band errors sit at the end of a stream, out of sight of the first bytes.
    const events = body.toString('utf8').split('\n\n').filter((e) => e !== '');
    out.push(wrap(`last event: ${visible(events.at(-1) ?? '').slice(0, 2 * WIDTH)}`, '  '));
  }
  return { text: out.join('\n'), status: res.status };
}

async function throughSdk(endpoint: Endpoint, c: Case): Promise<string> {
  const client = sdk(endpoint.url);
  // The SDK's request types do not know llama-server's extra fields; the body is what was sent raw.
  const outcome =
    c.path === '/v1/chat/completions'
      ? await collect(() => client.chat.completions.create(c.body as unknown as OpenAI.ChatCompletionCreateParamsStreaming))
      : await collect(() => client.completions.create(c.body as unknown as OpenAI.CompletionCreateParamsStreaming));
  const n = outcome.chunks.length;
  const yielded = `yielded ${n} chunk${n === 1 ? '' : 's'}`;
  if (outcome.error === undefined) return `${yielded}, no error`;
  const err = outcome.error as Error & { status?: number };
  const raised = `raised ${err.constructor.name}${err.status !== undefined ? ` (status ${err.status})` : ''}`;
  return n === 0 ? `${raised}: ${err.message}` : `${yielded}, then ${raised}: ${err.message}`;
}

async function show(c: Case, index: number): Promise<[Seen, Seen]> {
  console.log(`\n${`━━ ${index}. ${c.title} `.padEnd(WIDTH, '━')}`);
  console.log(`POST ${c.path}  ${JSON.stringify(c.body).slice(0, WIDTH - c.path.length - 8)}`);
  const seen: Seen[] = [];
  for (const endpoint of [c.direct, c.proxied]) {
    const answer = await raw(endpoint, c);
    const sdkText = await throughSdk(endpoint, c);
    console.log(`${endpoint.label}:`);
    console.log(answer.text);
    console.log(wrap(`openai SDK: ${sdkText}`, '  '));
    seen.push({ status: String(answer.status), sdk: summarise(sdkText) });
  }
  return [seen[0] ?? { status: '?', sdk: '?' }, seen[1] ?? { status: '?', sdk: '?' }];
}

function summarise(sdkText: string): string {
  return sdkText.replace(/: .*$/s, '').replace(/^yielded /, '').replace(/raised /, '').replace(/ \(status \d+\)/, '');
}

async function main(): Promise<void> {
  process.env.LLAMA_SERVER = ensureLlamaServer();
  const model = ensureTinyModel();
  console.log(`llama-server: ${process.env.LLAMA_SERVER}\nmodel: ${model}`);

  const stops: Array<() => Promise<void>> = [];
  try {
    const llama: RunningLlamaServer = await startLlamaServer({ args: ['-c', '256', '-np', '1'] });
    stops.push(() => llama.stop());
    const tools: RunningLlamaServer = await startLlamaServer({ args: TOOL_PARSE_ERROR_SERVER_ARGS });
    stops.push(() => tools.stop());
    const fake: FakeUpstream = await startFakeUpstream({ fixture: fixtureById('FX06') });
    stops.push(() => fake.close());
    // Proxies are stopped before their upstreams (stops run in reverse).
    const proxies: RunningProxy[] = [];
    for (const upstream of [llama.url, tools.url, fake.url]) {
      const proxy = await startProxy({ upstream });
      stops.push(() => proxy.stop());
      proxies.push(proxy);
    }
    const [viaLlama, viaTools, viaFake] = proxies as [RunningProxy, RunningProxy, RunningProxy];
    const direct = { label: 'direct (llama-server b11669)', url: llama.url };
    const proxied = { label: 'through the proxy', url: viaLlama.url };

    const cases: Case[] = [
      {
        title: 'Healthy stream',
        short: 'healthy stream',
        path: '/v1/chat/completions',
        body: { model: 'tiny', messages: [{ role: 'user', content: 'hello' }], max_tokens: 8, stream: true, temperature: 0, seed: 1 },
        direct,
        proxied,
      },
      {
        title: 'Prompt over the context (-c 256), the seed case of #14566',
        short: 'prompt over the context',
        path: '/v1/chat/completions',
        body: { model: 'tiny', messages: [{ role: 'user', content: LONG_PROMPT }], max_tokens: 8, stream: true },
        direct,
        proxied,
      },
      {
        title: 'Tool-call parse error (hermes template, malformed call)',
        short: 'tool-call parse error',
        path: '/v1/chat/completions',
        body: { model: 'tiny', ...TOOL_PARSE_ERROR_REQUEST(true) },
        direct: { label: 'direct (llama-server b11669)', url: tools.url },
        proxied: { label: 'through the proxy', url: viaTools.url },
      },
      {
        title: 'Multi-prompt /v1/completions, second prompt too long',
        short: 'multi-prompt, 2nd too long',
        path: '/v1/completions',
        body: { model: 'tiny', prompt: ['hello', LONG_PROMPT], max_tokens: 4, stream: true, temperature: 0, seed: 1 },
        direct,
        proxied,
      },
      {
        title: 'Issue #14566 replayed on a byte-exact emulation of b5630',
        short: '#14566 on b5630 (emulated)',
        path: '/v1/chat/completions',
        body: { model: 'tiny', messages: [{ role: 'user', content: LONG_PROMPT }], max_tokens: 8, stream: true },
        direct: { label: 'direct (emulated b5630: `error:` line, then [DONE])', url: fake.url },
        proxied: { label: 'through the proxy', url: viaFake.url },
      },
    ];

    const rows: Array<[string, Seen, Seen]> = [];
    for (const [i, c] of cases.entries()) rows.push([c.short, ...(await show(c, i + 1))]);

    console.log(`\n${'━━ Summary: HTTP status, then what the openai SDK did '.padEnd(WIDTH, '━')}`);
    const col = (s: string, w: number, fill = ' '): string => (s.length >= w ? `${s.slice(0, w - 2)}… ` : s.padEnd(w, fill));
    console.log(`${col('case', 30)}${col('direct', 35)}through the proxy`);
    console.log(`${col('', 30, '─')}${col('', 35, '─')}${'─'.repeat(WIDTH - 65)}`);
    for (const [title, d, p] of rows) {
      console.log(`${col(title, 30)}${col(`${d.status}, ${d.sdk}`, 35)}${p.status}, ${p.sdk}`);
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch((err: unknown) => console.error('stop failed:', err));
  }
}

main().then(
  () => {
    process.exitCode = 0;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exitCode = 1;
  },
);
