// The V8 settings of src/v8-memory.ts rely on V8 reading its flags again when it acts, which node does not
// promise. Each check runs in a child process, once with the module and once without it, so a node upgrade
// that stops honouring a flag fails here instead of bringing the memory back unnoticed.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { projectRoot } from '../../src/project-root.js';

const MODULE = join(projectRoot(), 'dist', 'src', 'v8-memory.js');
const require = createRequire(import.meta.url);
const LLHTTP = require.resolve('undici/lib/llhttp/llhttp-wasm.js');
const LLHTTP_CONSTANTS = require.resolve('undici/lib/llhttp/constants.js');
const MiB = 1024 * 1024;
/** What V8 mallocs to recompile llhttp with its optimizing compiler: 25-37 MiB measured, never below 15. */
const TIER_UP_BYTES = 15 * MiB;

function child(withModule: boolean, body: string): number {
  const script = `
    const withModule = ${withModule};
    ${withModule ? `const { capYoungGeneration } = await import(${JSON.stringify(MODULE)});` : 'const capYoungGeneration = () => {};'}
    const v8 = (await import('node:v8')).default;
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    ${body}`;
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 }));
}

t.test('the young generation stops growing at 2 MiB semi-spaces', async (t) => {
  // Objects that live across a few scavenges, as requests in flight do: V8 grows the young generation for them.
  const body = `
    capYoungGeneration();
    const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    let live = [];
    let most = 0;
    for (let tick = 0; tick < 400; tick++) {
      for (let i = 0; i < 1000; i++) live.push({ text: 'x'.repeat(40) + i, list: [i, i + 1] });
      if (live.length > 8000) live = live.slice(4000);
      most = Math.max(most, newSpace());
      await new Promise((r) => setImmediate(r)); // lets the GC observer run
    }
    process.stdout.write(String(most));`;
  const capped = child(true, body);
  const free = child(false, body);
  // Both semi-spaces: 4 MiB on node 20. Node 24's V8 also widens the space a page at a time while it allocates
  // (to ~10 MiB here, then back), besides the growth the flag stops.
  t.ok(capped <= 12 * MiB, `new space stays small (${capped / MiB} MiB)`);
  t.ok(free >= 32 * MiB, `without the module it grows to V8's maximum (${free / MiB} MiB): the check means something`);
});

t.test('a full GC comes before the old generation has grown far past what is live', async (t) => {
  // 10 MB that stays, and objects that outlive a few scavenges before they die, as a stream's do.
  const body = `
    capYoungGeneration();
    const oldSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
    const kept = Array.from({ length: 150000 }, (_, i) => ({ i, text: 'k' + i }));
    let recent = [];
    let most = 0;
    for (let tick = 0; tick < 400; tick++) {
      for (let i = 0; i < 2000; i++) recent.push({ text: 'x'.repeat(40) + i, list: [i, i + 1] });
      if (recent.length > 30000) recent = recent.slice(10000);
      most = Math.max(most, oldSpace());
      await new Promise((r) => setImmediate(r));
    }
    process.stdout.write(String(kept.length > 0 ? most : 0)); // (kept is used, so it stays alive to the end)`;
  const limited = child(true, body);
  const free = child(false, body);
  // Node 20: ~40 vs ~94 MiB; node 24: ~51 vs ~121 MiB.
  t.ok(limited < 0.6 * free, `old space peaks at ${(limited / MiB).toFixed(0)} MiB, against ${(free / MiB).toFixed(0)} MiB without the module`);
});

t.test("llhttp's WebAssembly is not recompiled by the optimizing compiler", async (t) => {
  // undici's parser, hot: what V8 allocates to tier it up shows in the peak of its malloc'd memory.
  const body = `
    const mod = new WebAssembly.Module(require(${JSON.stringify(LLHTTP)}));
    const none = () => 0;
    const env = Object.fromEntries(['wasm_on_url', 'wasm_on_status', 'wasm_on_message_begin', 'wasm_on_header_field',
      'wasm_on_header_value', 'wasm_on_headers_complete', 'wasm_on_body', 'wasm_on_message_complete'].map((n) => [n, none]));
    const ll = new WebAssembly.Instance(mod, { env }).exports;
    const event = Buffer.from('data: {"choices":[{"delta":{"content":"' + 'x'.repeat(200) + '"}}]}\\n\\n');
    const chunk = Buffer.concat([Buffer.from(event.length.toString(16) + '\\r\\n'), event, Buffer.from('\\r\\n')]);
    const head = Buffer.from('HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n');
    const at = ll.malloc(4096);
    const parser = ll.llhttp_alloc(require(${JSON.stringify(LLHTTP_CONSTANTS)}).TYPE.RESPONSE);
    const execute = (bytes) => {
      new Uint8Array(ll.memory.buffer, at, bytes.length).set(bytes);
      if (ll.llhttp_execute(parser, at, bytes.length) !== 0) throw new Error('llhttp refused the bytes');
    };
    execute(head);
    // The tier-up compiles on a background thread, late on a busy machine: without the module the parser runs
    // until it shows (15 s at most); with it, for 3 s, several times what the tier-up takes on a quiet machine.
    const peak = () => v8.getHeapStatistics().peak_malloced_memory;
    const until = Date.now() + (withModule ? 3_000 : 15_000);
    while (Date.now() < until && peak() <= ${TIER_UP_BYTES}) {
      for (let i = 0; i < 20000; i++) execute(chunk);
      await new Promise((r) => setTimeout(r, 10)); // lets a background compile finish
    }
    process.stdout.write(String(peak()));`;
  const liftoff = child(true, body);
  const tiered = child(false, body);
  t.ok(liftoff < 10 * MiB, `peak of V8's malloc'd memory stays low (${(liftoff / MiB).toFixed(1)} MiB)`);
  t.ok(tiered > TIER_UP_BYTES, `without the module the tier-up shows (${(tiered / MiB).toFixed(1)} MiB): the check means something`);
});
