/**
 * V8 settings that keep the proxy's memory down. They are set from inside the process, so they hold
 * however it is started (bin/, `npm start`, a deploy file, a wrapper script): node's command line would be
 * the usual place, but nothing makes a deployment pass it. Each flag here is one that V8 reads again when it
 * acts, not only at start-up (checked on node 20 and 24 by test/cli/v8-memory.test.ts); the others,
 * `--max-semi-space-size` among them, do nothing once the process runs.
 *
 * This module sets them when it is imported, so it must be the first import of the CLI: the young
 * generation is held before the modules load, and WebAssembly is compiled only after.
 */
import v8 from 'node:v8';
import { PerformanceObserver } from 'node:perf_hooks';

/**
 * undici parses HTTP with llhttp compiled to WebAssembly. Left to itself, V8 recompiles llhttp's big parser
 * function with its optimizing compiler once it is hot (on the first upstream responses), and that takes
 * 25-37 MiB of memory for a fraction of a second: the process's peak, however light the load. Liftoff, the
 * baseline compiler, is what runs before that anyway; it costs ~0.1 µs more per response chunk parsed.
 * `--liftoff-only` alone is enough on node 20; node 24's V8 decides on tiering by the other two flags, which
 * `--liftoff-only` implies on the command line but not when it is set at run time.
 */
v8.setFlagsFromString('--liftoff-only');
v8.setFlagsFromString('--no-wasm-tier-up');
v8.setFlagsFromString('--no-wasm-dynamic-tiering');

/**
 * V8's young generation (two semi-spaces) grows under load from 0.5 MiB up to 16 MiB each: through 64
 * concurrent streams the proxy peaks ~12 MiB higher than with 2 MiB (83 vs 71 MiB RSS). At 2 MiB the CPU per
 * event is the same within the measurement's noise; at 0.5-1 MiB scavenges come so often that it is 25-35 %
 * higher.
 */
const SEMI_SPACE_BYTES = 2 * 1024 * 1024;

// V8 grows the semi-spaces by this factor each time, reading the flag at each growth (only at start-up does it
// refuse a factor below 2). 1 holds their size, so the modules load with the smallest young generation and the
// size reached does not depend on how much they allocate (loading alone grew it to 2-4 MiB);
// capYoungGeneration() then lets it grow to SEMI_SPACE_BYTES.
v8.setFlagsFromString('--semi-space-growth-factor=1');

/**
 * Objects of a request that outlive two scavenges (a stream lasts longer than that) are promoted to the old
 * generation and die there. V8 lets it grow to up to 4× what the last full GC left before the next one: under
 * steady streaming the old space then saw-tooths between 10 and 35 MiB (peak RSS 93-96 MiB over 8 s of 64
 * streams). At +50 % a full GC comes every ~2 s instead, at ~18 MiB, for ~10 ms of CPU each (peak 77-78 MiB).
 * V8 reads this flag each time it sets the next limit.
 */
v8.setFlagsFromString('--heap-growing-percent=50');

function semiSpaceBytes(): number | undefined {
  const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  return newSpace === undefined ? undefined : newSpace.space_size / 2; // both semi-spaces
}

/**
 * Once the proxy runs: the young generation grows again as V8 grows it by itself (×2 at a time) until the
 * semi-spaces reach SEMI_SPACE_BYTES, then no more. V8 grows it in a scavenge once enough has survived since
 * the last growth; the observer sees the new size after that scavenge, long before enough can survive again.
 * (Node 24's V8 also widens the space a page at a time while it allocates, and narrows it again; the flag
 * does not stop that, but it stays far below the 64 MiB it reaches there without the cap.)
 */
export function capYoungGeneration(): void {
  const now = semiSpaceBytes();
  if (now !== undefined && now >= SEMI_SPACE_BYTES) return;
  v8.setFlagsFromString('--semi-space-growth-factor=2'); // V8's own
  if (now === undefined) return; // a V8 that does not show its young generation: left as it is
  const observer = new PerformanceObserver(() => {
    if ((semiSpaceBytes() ?? 0) < SEMI_SPACE_BYTES) return;
    v8.setFlagsFromString('--semi-space-growth-factor=1');
    observer.disconnect();
  });
  observer.observe({ entryTypes: ['gc'] });
}
