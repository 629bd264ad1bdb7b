/**
 * The command line: commander collects the raw values, config.ts validates them, app.ts runs. Exit codes:
 * 0 after a clean shutdown, 2 for a bad configuration, 1 for anything else (a crash loop included).
 */
// First: it sets V8 flags that must hold before the other modules load (see the module).
import { capYoungGeneration } from './v8-memory.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { projectRoot } from './project-root.js';
import { ConfigError, flagName, loadConfig, OPTIONS, type OptionKey } from './config.js';
import { createLogger } from './log.js';
import { startApp } from './app.js';

const EXIT_BAD_CONFIG = 2;

function buildProgram(): Command {
  const program = new Command('llama-status-proxy')
    .description("A sidecar that makes llama.cpp's llama-server speak honest HTTP: errors it sends inside a 200 stream become real statuses.")
    .usage('[options] [-- llama-server [llama-server args...]]')
    .argument('[command...]', 'llama-server command line to supervise (after --)')
    .option('--config <file>', 'JSON config file; every key of config.example.json (env: LLAMA_STATUS_PROXY_CONFIG)')
    .version(packageVersion(), '-V, --version', 'print the version')
    .exitOverride()
    .configureOutput({ writeErr: () => undefined })
    .helpOption('-h, --help', 'show this help');
  for (const key of Object.keys(OPTIONS) as OptionKey[]) {
    const spec = OPTIONS[key];
    if (!('placeholder' in spec) && spec.kind.type !== 'bool') continue; // lists and maps: file or env only
    const flags = spec.kind.type === 'bool' ? `--${flagName(key)}` : `--${flagName(key)} <${'placeholder' in spec ? spec.placeholder : 'value'}>`;
    const option = new Option(flags, spec.description);
    if (spec.default !== undefined) option.default(spec.default);
    program.addOption(option);
  }
  program.addHelpText(
    'after',
    `
Every option can also be set in the environment (LLAMA_STATUS_PROXY_FIRST_EVENT_TIMEOUT_MS=…) or in the
config file (firstEventTimeoutMs). Precedence: command line, environment, file, default.

Examples:
  llama-status-proxy --upstream http://127.0.0.1:8081 --port 8080
  llama-status-proxy -- llama-server -m model.gguf --port 8080`,
  );
  return program;
}

function packageVersion(): string {
  const pkg: unknown = JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8'));
  return typeof pkg === 'object' && pkg !== null && 'version' in pkg ? String(pkg.version) : 'unknown';
}

/** Runs the CLI; resolves with the exit code once the process should end. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return 0;
      process.stderr.write(`llama-status-proxy: ${err.message.replace(/^error: /, '')} (see --help)\n`);
      return EXIT_BAD_CONFIG;
    }
    throw err;
  }

  const cli: Partial<Record<OptionKey, unknown>> = {};
  for (const key of Object.keys(OPTIONS) as OptionKey[]) {
    if (program.getOptionValueSource(key) === 'cli') cli[key] = program.getOptionValue(key);
  }
  const [command, ...args] = program.args;
  if (command !== undefined) {
    cli.command = command;
    cli.args = args;
  }

  let config;
  try {
    config = loadConfig({ cli, configFile: program.getOptionValue('config') as string | undefined, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`llama-status-proxy: ${err.message}\n`);
      return EXIT_BAD_CONFIG;
    }
    throw err;
  }

  const log = createLogger(config.logLevel);
  const app = await startApp(config, log);
  capYoungGeneration();
  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      app.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    void app.failed.then((reason) => {
      log.fatal({ reason }, 'giving up');
      stopping = true;
      app.stop().finally(() => resolve(1));
    });
  });
}
