/**
 * Configuration: one table of options drives the CLI flags, the environment variables, the JSON file and
 * config.example.json, so the four can never disagree. This module is the only reader of env and file; the
 * CLI hands it the raw strings commander collected. Precedence: CLI > env > file > defaults.
 */
import { readFileSync } from 'node:fs';

export const ENV_PREFIX = 'LLAMA_STATUS_PROXY_';

type Kind =
  | { type: 'string' }
  | { type: 'url' }
  | { type: 'int'; min: number; max: number }
  | { type: 'bool' }
  | { type: 'enum'; values: readonly string[] }
  | { type: 'string[]' }
  | { type: 'record' };

interface OptionSpec {
  readonly kind: Kind;
  readonly default: unknown;
  readonly description: string;
  /** Shown in --help as `--flag <placeholder>`; absent = file/env only (lists and maps). */
  readonly placeholder?: string;
}

const MAX_INT = Number.MAX_SAFE_INTEGER;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Every option, with its default. The order here is the order of --help and config.example.json. */
export const OPTIONS = {
  upstream: {
    kind: { type: 'url' },
    default: undefined,
    placeholder: 'url',
    description: 'llama-server to proxy to (sidecar mode); not used when a llama-server command is given',
  },
  host: { kind: { type: 'string' }, default: '127.0.0.1', placeholder: 'addr', description: 'address to listen on' },
  port: { kind: { type: 'int', min: 0, max: 65535 }, default: 8080, placeholder: 'n', description: 'port to listen on (0: any free port)' },
  firstEventTimeoutMs: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 15000,
    placeholder: 'ms',
    description: 'longest hold of a stream before its deciding event; then 200 is committed (0: no limit)',
  },
  maxHoldBytes: {
    kind: { type: 'int', min: 1, max: 1 << 30 },
    default: 65536,
    placeholder: 'bytes',
    description: 'most bytes held before the deciding event; then 200 is committed',
  },
  drainTimeoutMs: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 25000,
    placeholder: 'ms',
    description: 'on SIGTERM/SIGINT, how long in-flight requests may finish before they are ended',
  },
  retryAfterSeconds: {
    kind: { type: 'int', min: 0, max: 3600 },
    default: 5,
    placeholder: 's',
    description: 'Retry-After sent with 503 answers',
  },
  maxBodyBytes: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 32 * 1024 * 1024,
    placeholder: 'bytes',
    description: 'largest request body accepted; larger ones get 413 (0: no limit)',
  },
  upstreamConnectTimeoutMs: {
    kind: { type: 'int', min: 1, max: MAX_INT },
    default: 5000,
    placeholder: 'ms',
    description: 'time to connect to llama-server',
  },
  upstreamSpareConnections: {
    kind: { type: 'int', min: 0, max: 64 },
    default: 1,
    placeholder: 'n',
    description:
      'upstream connections opened ahead of need, so a stream need not wait for a connect (llama-server closes its connection after every stream); made only while requests come, closed after 2 s unused (0: none)',
  },
  upstreamHeadersTimeoutMs: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 600000,
    placeholder: 'ms',
    description: 'time for llama-server to send response headers; covers queueing and CPU prefill (0: no limit)',
  },
  upstreamBodyTimeoutMs: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 300000,
    placeholder: 'ms',
    description: 'longest silence between two pieces of a response body (0: no limit)',
  },
  apiKey: {
    kind: { type: 'string' },
    default: undefined,
    placeholder: 'key',
    description: 'require this key from clients (Authorization: Bearer, or x-api-key); /-/live and /-/ready stay open',
  },
  apiKeyFile: {
    kind: { type: 'string' },
    default: undefined,
    placeholder: 'file',
    description: 'read the API key from this file (keeps it out of the process list)',
  },
  clientHeadersTimeoutMs: {
    kind: { type: 'int', min: 1, max: MAX_INT },
    default: 60000,
    placeholder: 'ms',
    description: 'time a client has to send its request headers (slowloris guard)',
  },
  clientRequestTimeoutMs: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 300000,
    placeholder: 'ms',
    description: 'time a client has to send its whole request, body included (0: no limit)',
  },
  logLevel: {
    kind: { type: 'enum', values: LOG_LEVELS },
    default: 'info',
    placeholder: 'level',
    description: `log level: ${LOG_LEVELS.join(', ')}`,
  },
  command: {
    kind: { type: 'string' },
    default: undefined,
    description: 'llama-server executable to supervise (supervised mode; on the CLI: everything after --)',
  },
  args: { kind: { type: 'string[]' }, default: [], description: 'arguments for the supervised llama-server' },
  env: { kind: { type: 'record' }, default: {}, description: 'extra environment variables for the supervised llama-server' },
  readyWaitMs: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 10000,
    placeholder: 'ms',
    description: 'while llama-server is not ready, how long an API request waits before it gets 503',
  },
  startupTimeoutMs: {
    kind: { type: 'int', min: 1, max: MAX_INT },
    default: 600000,
    placeholder: 'ms',
    description: 'longest time llama-server may take to load its model',
  },
  healthIntervalMs: {
    kind: { type: 'int', min: 100, max: MAX_INT },
    default: 10000,
    placeholder: 'ms',
    description: 'period of the health check while llama-server runs',
  },
  healthTimeoutMs: {
    kind: { type: 'int', min: 1, max: MAX_INT },
    default: 5000,
    placeholder: 'ms',
    description: 'timeout of one health check',
  },
  healthFailureThreshold: {
    kind: { type: 'int', min: 1, max: 1000 },
    default: 3,
    placeholder: 'n',
    description: 'consecutive failed health checks that make the supervisor restart llama-server',
  },
  restartBackoffInitialMs: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 1000,
    placeholder: 'ms',
    description: 'first restart delay; doubles per failed start',
  },
  restartBackoffMaxMs: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 60000,
    placeholder: 'ms',
    description: 'longest restart delay',
  },
  crashLoopMaxStarts: {
    kind: { type: 'int', min: 1, max: 1000 },
    default: 5,
    placeholder: 'n',
    description: 'failed starts within crashLoopWindowMs after which restarting stops',
  },
  crashLoopWindowMs: {
    kind: { type: 'int', min: 1, max: MAX_INT },
    default: 600000,
    placeholder: 'ms',
    description: 'window for counting failed starts',
  },
  exitOnCrashLoop: {
    kind: { type: 'bool' },
    default: false,
    description: 'exit non-zero on a crash loop, so systemd or Kubernetes can take over',
  },
  stopGraceMs: {
    kind: { type: 'int', min: 0, max: MAX_INT },
    default: 10000,
    placeholder: 'ms',
    description: 'after SIGTERM to llama-server, how long before SIGKILL',
  },
} as const satisfies Record<string, OptionSpec>;

export type OptionKey = keyof typeof OPTIONS;

export interface Config {
  upstream: URL | undefined;
  host: string;
  port: number;
  firstEventTimeoutMs: number;
  maxHoldBytes: number;
  drainTimeoutMs: number;
  retryAfterSeconds: number;
  maxBodyBytes: number;
  upstreamConnectTimeoutMs: number;
  upstreamSpareConnections: number;
  upstreamHeadersTimeoutMs: number;
  upstreamBodyTimeoutMs: number;
  apiKey: string | undefined;
  apiKeyFile: string | undefined;
  clientHeadersTimeoutMs: number;
  clientRequestTimeoutMs: number;
  logLevel: (typeof LOG_LEVELS)[number];
  command: string | undefined;
  args: string[];
  env: Record<string, string>;
  readyWaitMs: number;
  startupTimeoutMs: number;
  healthIntervalMs: number;
  healthTimeoutMs: number;
  healthFailureThreshold: number;
  restartBackoffInitialMs: number;
  restartBackoffMaxMs: number;
  crashLoopMaxStarts: number;
  crashLoopWindowMs: number;
  exitOnCrashLoop: boolean;
  stopGraceMs: number;
  /** The options the user set (CLI, env or file), as opposed to defaults. */
  setByUser: ReadonlySet<OptionKey>;
}

/** A bad configuration value. The CLI prints `message` as one line and exits 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly key: string,
    detail: string,
  ) {
    super(`invalid configuration: ${key}: ${detail}`);
  }
}

export function isOptionKey(key: string): key is OptionKey {
  return Object.hasOwn(OPTIONS, key);
}

export function envName(key: OptionKey): string {
  return ENV_PREFIX + key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
}

export function flagName(key: OptionKey): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function describeExpected(kind: Kind): string {
  switch (kind.type) {
    case 'string':
      return 'a non-empty string';
    case 'url':
      return 'an http:// or https:// URL';
    case 'int':
      return `an integer from ${kind.min} to ${kind.max}`;
    case 'bool':
      return 'true or false';
    case 'enum':
      return `one of ${kind.values.join(', ')}`;
    case 'string[]':
      return 'an array of strings';
    case 'record':
      return 'an object of string values';
  }
}

/**
 * Strings come from the CLI and env and are parsed; JSON values from the file must have the right type
 * already ("8080" for a port there is a mistake worth reporting).
 */
function coerce(key: OptionKey, raw: unknown, origin: string, fromText = true): unknown {
  const kind: Kind = OPTIONS[key].kind;
  const fail = (): never => {
    const shown = typeof raw === 'string' ? JSON.stringify(raw) : JSON.stringify(raw) ?? String(raw);
    throw new ConfigError(key, `expected ${describeExpected(kind)}, got ${shown} (from ${origin})`);
  };
  switch (kind.type) {
    case 'string':
      return typeof raw === 'string' && raw.length > 0 ? raw : fail();
    case 'url': {
      if (typeof raw !== 'string') return fail();
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        return fail();
      }
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '' ? url : fail();
    }
    case 'int': {
      const n = typeof raw === 'number' ? raw : fromText && typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      return Number.isSafeInteger(n) && n >= kind.min && n <= kind.max ? n : fail();
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw;
      if (fromText && (raw === 'true' || raw === '1')) return true;
      if (fromText && (raw === 'false' || raw === '0')) return false;
      return fail();
    case 'enum':
      return typeof raw === 'string' && kind.values.includes(raw) ? raw : fail();
    case 'string[]':
      if (typeof raw === 'string') return fail(); // lists come from the file or after `--`, never as one string
      return Array.isArray(raw) && raw.every((v) => typeof v === 'string') ? [...raw] : fail();
    case 'record':
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return fail();
      return Object.values(raw).every((v) => typeof v === 'string') ? { ...raw } : fail();
  }
}

export interface ConfigSources {
  /** Values the user gave on the command line, as strings (or booleans for flags, arrays for `--`). */
  cli: Partial<Record<OptionKey, unknown>>;
  /** Path from --config, or from LLAMA_STATUS_PROXY_CONFIG. */
  configFile?: string | undefined;
  env: NodeJS.ProcessEnv;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ConfigError('config', `cannot read ${JSON.stringify(path)} (${code})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('config', `${JSON.stringify(path)} is not valid JSON (${(err as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('config', `${JSON.stringify(path)} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

export function loadConfig(sources: ConfigSources): Config {
  const values: Record<string, unknown> = {};
  const setByUser = new Set<OptionKey>();
  for (const key of Object.keys(OPTIONS) as OptionKey[]) values[key] = OPTIONS[key].default;

  const configFile = sources.configFile ?? sources.env[`${ENV_PREFIX}CONFIG`];
  if (configFile !== undefined && configFile !== '') {
    for (const [key, raw] of Object.entries(readConfigFile(configFile))) {
      if (key.startsWith('$')) continue; // "$comment" and the like: JSON has no comments
      if (!isOptionKey(key)) throw new ConfigError(key, `unknown key in ${JSON.stringify(configFile)}`);
      // null unsets an option that has no default (e.g. "command": null in the example file)
      values[key] = raw === null && OPTIONS[key].default === undefined ? undefined : coerce(key, raw, configFile, false);
      setByUser.add(key);
    }
  }

  for (const [name, raw] of Object.entries(sources.env)) {
    if (!name.startsWith(ENV_PREFIX) || name === `${ENV_PREFIX}CONFIG` || raw === undefined) continue;
    const key = (Object.keys(OPTIONS) as OptionKey[]).find((k) => envName(k) === name);
    if (key === undefined) throw new ConfigError(name, 'unknown environment variable');
    // Lists and maps come as JSON in the environment.
    const kind = OPTIONS[key].kind.type;
    values[key] = coerce(key, kind === 'string[]' || kind === 'record' ? parseJsonEnv(key, name, raw) : raw, name);
    setByUser.add(key);
  }

  for (const [key, raw] of Object.entries(sources.cli) as [OptionKey, unknown][]) {
    if (raw === undefined) continue;
    values[key] = coerce(key, raw, `--${flagName(key)}`);
    setByUser.add(key);
  }

  const config = { ...values, setByUser } as unknown as Config;
  if (config.restartBackoffMaxMs < config.restartBackoffInitialMs) {
    throw new ConfigError('restartBackoffMaxMs', `must be at least restartBackoffInitialMs (${config.restartBackoffInitialMs})`);
  }
  if (config.upstream === undefined && config.command === undefined) {
    throw new ConfigError('upstream', 'required: give --upstream URL, or a llama-server command after --');
  }
  if (config.clientRequestTimeoutMs > 0 && config.clientHeadersTimeoutMs > config.clientRequestTimeoutMs) {
    throw new ConfigError('clientHeadersTimeoutMs', `must not exceed clientRequestTimeoutMs (${config.clientRequestTimeoutMs})`);
  }
  if (config.apiKeyFile !== undefined) {
    if (config.apiKey !== undefined) throw new ConfigError('apiKeyFile', 'give apiKey or apiKeyFile, not both');
    config.apiKey = readApiKeyFile(config.apiKeyFile);
  }
  if (config.upstream !== undefined && config.command !== undefined) {
    throw new ConfigError('upstream', 'cannot be combined with a llama-server command (sidecar or supervised, not both)');
  }
  return config;
}

function readApiKeyFile(path: string): string {
  let key: string;
  try {
    key = readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new ConfigError('apiKeyFile', `cannot read ${JSON.stringify(path)} (${(err as NodeJS.ErrnoException).code ?? 'unknown error'})`);
  }
  if (key === '') throw new ConfigError('apiKeyFile', `${JSON.stringify(path)} is empty`);
  return key;
}

function parseJsonEnv(key: OptionKey, name: string, raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw new ConfigError(key, `expected JSON ${describeExpected(OPTIONS[key].kind)} (from ${name})`);
  }
}

/** config.example.json: every key with its default (upstream shown with an example, command as null). */
export function exampleConfig(): Record<string, unknown> {
  const examples: Partial<Record<OptionKey, unknown>> = {
    upstream: 'http://127.0.0.1:8081',
  };
  const out: Record<string, unknown> = {
    $comment: 'Every option with its default. Set upstream (sidecar mode) or command (supervised mode). See README.',
  };
  for (const key of Object.keys(OPTIONS) as OptionKey[]) out[key] = examples[key] ?? OPTIONS[key].default ?? null;
  return out;
}
