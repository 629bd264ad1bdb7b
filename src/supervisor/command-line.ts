/**
 * The drop-in command line: `llama-status-proxy -- llama-server -m model.gguf --port 8080`. The address
 * the user gave llama-server becomes the proxy's; llama-server itself moves to a private loopback port.
 * Every other argument passes through untouched.
 */
export interface ChildCommandLine {
  /** The arguments for the child, with our --host/--port. */
  readonly args: string[];
  readonly env: Record<string, string>;
  /** What the user asked llama-server to listen on, if anything. */
  readonly host: string | undefined;
  readonly port: string | undefined;
}

const HOST_FLAGS = new Set(['--host']);
const PORT_FLAGS = new Set(['--port']);

export function rewriteChildCommandLine(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  childPort: number,
): ChildCommandLine {
  let host = env.LLAMA_ARG_HOST;
  let port = env.LLAMA_ARG_PORT;
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') && eq !== -1 ? arg.slice(0, eq) : arg;
    const isHost = HOST_FLAGS.has(name);
    const isPort = PORT_FLAGS.has(name);
    if (!isHost && !isPort) {
      out.push(arg);
      continue;
    }
    const value = eq !== -1 && name !== arg ? arg.slice(eq + 1) : args[++i];
    if (isHost) host = value;
    else port = value;
  }
  out.push('--host', '127.0.0.1', '--port', String(childPort));
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && k !== 'LLAMA_ARG_HOST' && k !== 'LLAMA_ARG_PORT') childEnv[k] = v;
  return { args: out, env: childEnv, host, port };
}

/** llama-server flags whose value is a secret. */
const SECRET_FLAGS = new Set(['--api-key', '--hf-token', '-hft']);

/** The arguments as they may be logged: the value of a secret flag (`--api-key K`, `--api-key=K`) hidden. */
export function argsForLog(args: readonly string[]): string[] {
  return args.map((arg, i) => {
    const eq = arg.indexOf('=');
    if (eq !== -1 && SECRET_FLAGS.has(arg.slice(0, eq))) return `${arg.slice(0, eq)}=[redacted]`;
    return SECRET_FLAGS.has(args[i - 1] ?? '') ? '[redacted]' : arg;
  });
}
