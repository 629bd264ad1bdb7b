// Shared by the end-to-end tests: a real llama-server with the built CLI in front, the official SDK as
// the client, and the few readers needed to say what a client actually received.
import { join } from 'node:path';
import OpenAI from 'openai';
import { projectRoot } from '../../src/project-root.js';
import { writeTinyModel } from '../../src/tiny-model/ensure.js';
import { startLlamaServer, type RunningLlamaServer, type StartOptions } from './llama-server.js';
import { startProxyCli, type ChildProxy, type LogLine } from './proxy.js';

export interface Stack {
  llama: RunningLlamaServer;
  proxy: ChildProxy;
  /** The SDK pointed at the proxy. */
  client: OpenAI;
  /** The SDK pointed at llama-server itself. */
  direct: OpenAI;
  /** Proxy first, so its connections to llama-server are closed before llama-server gets SIGTERM (REPORT §6). */
  stop(): Promise<void>;
}

export async function startStack(opts: StartOptions = {}): Promise<Stack> {
  const llama = await startLlamaServer(opts);
  let proxy: ChildProxy;
  try {
    // A short drain keeps a failed test's teardown quick; the tests close their streams before stopping.
    proxy = await startProxyCli(['--upstream', llama.url, '--drain-timeout-ms', '1000']);
  } catch (err) {
    await llama.stop();
    throw err;
  }
  return {
    llama,
    proxy,
    client: sdk(proxy.url),
    direct: sdk(llama.url),
    async stop() {
      try {
        await proxy.stop();
      } finally {
        await llama.stop();
      }
    },
  };
}

export function sdk(baseUrl: string): OpenAI {
  return new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'x', maxRetries: 0 });
}

/**
 * A tiny model that accepts a 32k context. Generation slows down as the context grows, so a long
 * generation on it cannot finish within the few seconds a test watches: with the default 2k model, the
 * 2000 tokens the default context allows are done in about a second on 2 cores.
 */
export function longContextModel(): string {
  return writeTinyModel(join(projectRoot(), '.cache', 'models', 'tiny-32k.gguf'), { contextLength: 32_768 }).path;
}

/** Far over 256 tokens: the tiny vocabulary turns most characters into a token of their own. */
/**
 * A chat stream that runs for minutes on the 32k-context tiny model (longContextModel()): whatever cuts it
 * short (a client abort, a killed llama-server) does so while llama-server is still generating.
 */
export const LONG_GENERATION = {
  model: 'tiny',
  messages: [{ role: 'user' as const, content: 'hello' }],
  max_tokens: 20_000,
  ignore_eos: true,
  stream: true as const,
};

export const LONG_PROMPT = 'The quick brown fox jumps over the lazy dog. '.repeat(12);

export async function post(baseUrl: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

/** The `data:` payloads of an SSE body, event by event. */
export function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((event) => event !== '')
    .map((event) =>
      event
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice('data: '.length))
        .join('\n'),
    );
}

/**
 * Per-request fields blanked: ids, creation time, timings and the prompt-cache count, which depends on
 * what the slot held before, not on what the proxy did.
 */
export function normalise(text: string): string {
  return text
    .replace(/"id":"[^"]*"/g, '"id":"<id>"')
    .replace(/"created":\d+/g, '"created":0')
    .replace(/"timings":\{[^}]*\}/g, '"timings":{}')
    .replace(/"cached_tokens":\d+/g, '"cached_tokens":0');
}

export interface SdkOutcome<T> {
  chunks: T[];
  error?: unknown;
}

/**
 * Everything the SDK yields, and what it raised; `create` is the SDK call, so an error thrown before the
 * first chunk (a real HTTP status) is caught here too. `limit` bounds the loop.
 */
export async function collect<T>(create: () => Promise<AsyncIterable<T>>, limit = 100_000): Promise<SdkOutcome<T>> {
  const chunks: T[] = [];
  try {
    const stream = await create();
    for await (const chunk of stream) {
      chunks.push(chunk);
      if (chunks.length >= limit) throw new Error(`more than ${limit} chunks`);
    }
    return { chunks };
  } catch (error) {
    return { chunks, error };
  }
}

export function isRequestLine(path: string): (line: LogLine) => boolean {
  return (line) => line.msg === 'request' && line.path === path;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
