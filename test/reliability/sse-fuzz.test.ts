// Fuzzing the SSE reader and the relay: random bytes and SSE-ish token soup, fed whole, in random
// pieces and byte by byte. No exception; events, relayed bytes and endedWell() independent of the cut
// and equal to a plain model; memory flat over a long stream. RELIABILITY_FUZZ_INPUTS runs more inputs,
// RELIABILITY_FUZZ_SEED another sequence.
import t from 'tap';
import { fuzzInputs, fuzzLongStream, longFinalEventCuts } from './.harness/fuzz.js';
import { deltaMb, mb, retained } from './.harness/probes.js';
import { envInt, SIZES } from './.harness/sizes.js';

const inputs = envInt('RELIABILITY_FUZZ_INPUTS', SIZES.fuzz.inputs);
const seed = envInt('RELIABILITY_FUZZ_SEED', 1);

t.test(`${inputs} random inputs, seed ${seed}`, async (t) => {
  const r = fuzzInputs({ inputs, seed });
  t.comment(`${r.inputs} inputs, ${r.bytes} bytes, ${r.feedings} feedings, ${r.events} events in ${r.ms} ms`);
  t.equal(r.inputs, inputs, 'every input was tried');
  t.equal(r.exceptions, 0, 'no exception');
  t.equal(r.failureCount, 0, 'reader and relay agree with the model however the bytes are cut', { counterexamples: r.failures });
});

t.test('one long stream through one reader and one relay', async (t) => {
  const r = fuzzLongStream({ bytes: SIZES.fuzz.streamBytes, seed });
  const growth = retained(r.memory.end) - retained(r.memory.quarter);
  t.comment(`${mb(r.bytes)} MB twice, ${r.events} events, heap + buffers ${mb(retained(r.memory.quarter))} MB after a quarter, ${mb(retained(r.memory.end))} MB at the end, ${r.ms} ms`);
  // keeping the stream would add three quarters of it; the relay's tail window is 64 KiB
  t.ok(growth < r.bytes / 8, `memory does not grow with the stream (${deltaMb(growth)} MB over ${mb((r.bytes * 3) / 4)} MB fed)`);
  t.equal(r.endedWell.whenDone, true, 'ending with [DONE] ended well');
  t.equal(r.endedWell.whenCut, false, 'ending mid-answer did not');
});

t.test('a final event longer than the tail window still ends the stream well, however it is cut', async (t) => {
  // A native /completion stream ends with an event that echoes the prompt; a Responses stream with one
  // that repeats the whole output. Both can outgrow maxHoldBytes, the window the relay keeps.
  const r = longFinalEventCuts({ tailBytes: 256, trials: 200, seed });
  t.equal(r.misjudged, 0, `endedWell() true for every cut (${r.misjudged} of ${r.trials} misjudged${r.example ? `; e.g. ${r.example}` : ''})`);
});
