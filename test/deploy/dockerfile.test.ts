/**
 * deploy/docker/Dockerfile, without a Docker daemon: lint it with dockerfile-utils (the validator behind
 * the Docker language server, on the npm registry), check its structure, check that .dockerignore lets
 * through what it copies, and run its HEALTHCHECK command against a stand-in /-/live.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { validate, ValidationSeverity, type ValidatorSettings } from 'dockerfile-utils';
import { projectRoot } from '../../src/project-root.js';

const ROOT = projectRoot();
const TEXT = readFileSync(join(ROOT, 'deploy', 'docker', 'Dockerfile'), 'utf8');

// Every optional rule raised to an error: a warning would otherwise pass unnoticed.
const STRICT: ValidatorSettings = {
  deprecatedMaintainer: ValidationSeverity.ERROR,
  directiveCasing: ValidationSeverity.ERROR,
  emptyContinuationLine: ValidationSeverity.ERROR,
  instructionCasing: ValidationSeverity.ERROR,
  instructionCmdMultiple: ValidationSeverity.ERROR,
  instructionEntrypointMultiple: ValidationSeverity.ERROR,
  instructionHealthcheckMultiple: ValidationSeverity.ERROR,
  instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
  instructionWorkdirRelative: ValidationSeverity.ERROR,
};

interface Instruction {
  keyword: string;
  args: string;
}

/** Logical lines: comments dropped, backslash continuations joined. Enough for this one file. */
function parse(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const full = pending + line;
    pending = '';
    const space = full.indexOf(' ');
    out.push({ keyword: full.slice(0, space).toUpperCase(), args: full.slice(space + 1).trim() });
  }
  return out;
}

const instructions = parse(TEXT);
const stageStarts = instructions.flatMap((ins, i) => (ins.keyword === 'FROM' ? [i] : []));
const finalStage = instructions.slice(stageStarts.at(-1) ?? 0);
const inFinal = (keyword: string): Instruction[] => finalStage.filter((i) => i.keyword === keyword);

t.test('dockerfile-utils finds nothing, and does find a broken file', async (t) => {
  const diagnostics = validate(TEXT, STRICT);
  t.same(
    diagnostics.map((d) => `line ${d.range.start.line + 1}: ${d.message}`),
    [],
    'no lint findings',
  );
  const broken = 'FROM node:22-bookworm-slim\nHEALTHCHECK --interval=10x CMD true\nFROM\n';
  t.ok(validate(broken, STRICT).length >= 2, 'the linter is really running');
});

t.test('multi-stage build on a slim Node LTS image', async (t) => {
  t.ok(stageStarts.length >= 2, 'at least two stages');
  const base = /^ARG NODE_IMAGE=(\S+)$/m.exec(TEXT)?.[1] ?? '';
  t.match(base, /^node:\d+-[a-z]+-slim$/, 'a slim Node base image');
  const major = Number(/^node:(\d+)/.exec(base)?.[1]);
  t.ok(major >= 20 && major % 2 === 0, `Node ${major} is an even (LTS) line no older than package.json's engines`);
  const froms = instructions.filter((i) => i.keyword === 'FROM').map((i) => i.args);
  t.match(froms[0] ?? '', /^\$\{NODE_IMAGE\} AS build$/, 'first stage builds');
  t.equal(froms.at(-1), '${NODE_IMAGE}', 'the final stage starts from the same clean base');
});

t.test('the build stage compiles, the final stage has production dependencies only', async (t) => {
  const build = instructions.slice(stageStarts[0], stageStarts.at(-1)).map((i) => `${i.keyword} ${i.args}`);
  t.ok(build.includes('RUN npm ci'), 'build stage: npm ci');
  t.ok(build.includes('RUN npm run build'), 'build stage: npm run build');
  const runs = inFinal('RUN').map((i) => i.args);
  t.ok(runs.some((r) => /\bnpm ci\b.*--omit=dev/.test(r)), 'final stage: npm ci --omit=dev');
  t.notOk(runs.some((r) => /\bnpm (ci|install)\b/.test(r) && !r.includes('--omit=dev')), 'no dev install in the final stage');
  t.ok(
    inFinal('COPY').some((i) => /^--from=build \/app\/dist\/src /.test(i.args)),
    'only the compiled sources come from the build stage',
  );
  t.notMatch(
    instructions.map((i) => i.args).join('\n'),
    /llama-server|llama\.cpp/,
    'llama-server is not part of this image',
  );
});

t.test('runs as a numeric non-root user', async (t) => {
  const user = inFinal('USER').at(-1)?.args ?? '';
  const uid = user.split(':')[0] ?? '';
  t.match(uid, /^\d+$/, 'numeric, so runAsNonRoot can verify it');
  t.not(Number(uid), 0, 'not root');
});

t.test('exec-form ENTRYPOINT runs the package bin with node', async (t) => {
  const entry = inFinal('ENTRYPOINT');
  t.equal(entry.length, 1);
  t.same(JSON.parse(entry[0]?.args ?? 'null'), ['node', 'bin/llama-status-proxy.js'], 'exec form: node is PID 1 and gets SIGTERM');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  t.equal(pkg.bin['llama-status-proxy'], 'bin/llama-status-proxy.js', 'the same file package.json publishes');
  t.ok(existsSync(join(ROOT, 'bin', 'llama-status-proxy.js')));
});

function healthcheckCommand(): string[] {
  const hc = inFinal('HEALTHCHECK');
  if (hc.length !== 1) throw new Error(`expected one HEALTHCHECK, found ${hc.length}`);
  const json = /\bCMD (\[.*\])$/.exec(hc[0]?.args ?? '')?.[1];
  if (json === undefined) throw new Error('HEALTHCHECK is not in exec form');
  return JSON.parse(json) as string[];
}

t.test('HEALTHCHECK asks /-/live with node itself', async (t) => {
  const cmd = healthcheckCommand();
  t.equal(cmd[0], 'node', 'no curl in a slim image');
  t.match(cmd.join(' '), /\/-\/live/);
  t.notMatch(cmd.join(' '), /\/-\/ready/, 'liveness, not readiness: a loading model is not a dead container');
});

t.test('the HEALTHCHECK command works', async (t) => {
  const [, ...args] = healthcheckCommand();
  let status = 200;
  const server = http.createServer((req, res) => {
    res.statusCode = req.url === '/-/live' ? status : 404;
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  const run = async (p: number): Promise<number> => {
    const env = { ...process.env, LLAMA_STATUS_PROXY_PORT: String(p) };
    try {
      await promisify(execFile)(process.execPath, args, { env, timeout: 10_000 });
      return 0;
    } catch (err) {
      return (err as { code?: number }).code ?? -1;
    }
  };
  t.equal(await run(port), 0, 'healthy on 200');
  status = 503;
  t.equal(await run(port), 1, 'unhealthy on 503');
  server.close();
  t.equal(await run(port), 1, 'unhealthy when nothing listens');
});

t.test('.dockerignore lets through exactly what the build copies', async (t) => {
  const lines = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  t.equal(lines[0], '*', 'allow-list: everything is excluded first');
  const allowed = new Set(lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, '')));
  const sources = instructions
    .filter((i) => i.keyword === 'COPY' && !i.args.startsWith('--from='))
    .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
  t.ok(sources.length > 0);
  for (const src of sources) t.ok(allowed.has(src.replace(/\/$/, '')), `${src} is in the build context`);
  t.notOk(allowed.has('node_modules') || allowed.has('dist'), 'no host-built node_modules or dist');
});
