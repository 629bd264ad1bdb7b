/**
 * What the hold itself costs a healthy stream, in CPU: the work a proxy without a guard would not do. For
 * each stream, GuardedExchange keeps the first reads, reads their events and classifies each until one
 * decides, and arms and clears the first-event timer; the rest (200, the held bytes, the relay) a plain
 * proxy does too. Here that work runs alone, on the first two HTTP chunks of the fake upstream's streams
 * (the role chunk, then the first token: they come as two chunks of one read), as often as it takes to
 * be measured from process CPU time.
 *
 * A loop like this runs warmer than a proxy serving one stream at a time, so the figure is a lower bound;
 * the report sets it against the spread of the proxy's own CPU per stream between rounds: a cost below
 * that spread is one the benchmark cannot see.
 */
import { SseEventReader } from '../src/sse/event-reader.js';
import { firstDecision } from '../src/sse/classify.js';
import { contentEvent, ROLE_EVENT } from './shape.js';

const FIRST_READ = [Buffer.from(ROLE_EVENT), Buffer.from(contentEvent(250))];
const FIRST_EVENT_TIMEOUT_MS = 15_000;
const WARM_UP = 20_000;
const MEASURED = 200_000;

function holdOnce(): boolean {
  const timer = setTimeout(noop, FIRST_EVENT_TIMEOUT_MS);
  const reader = new SseEventReader();
  const held: Buffer[] = [];
  let decided = false;
  for (const chunk of FIRST_READ) {
    held.push(chunk);
    if (firstDecision((sink) => reader.push(chunk, sink)) !== undefined) {
      decided = true;
      break;
    }
  }
  clearTimeout(timer);
  return decided;
}

function noop(): void {}

/** CPU µs per stream spent holding: reading and classifying its first events, and the timer. */
export function holdCpuUsPerStream(): number {
  for (let i = 0; i < WARM_UP; i++) holdOnce();
  const before = process.cpuUsage();
  let decided = 0;
  for (let i = 0; i < MEASURED; i++) if (holdOnce()) decided++;
  const used = process.cpuUsage(before);
  if (decided !== MEASURED) throw new Error(`the hold decided ${decided} of ${MEASURED} streams: the fixture is wrong`);
  return (used.user + used.system) / MEASURED;
}
