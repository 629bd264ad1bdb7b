// RestartBudget: when to restart llama-server again, and when to stop trying.
import t from 'tap';
import { RestartBudget, type BackoffPolicy } from '../../src/supervisor/backoff.js';

const POLICY: BackoffPolicy = { initialMs: 1000, maxMs: 60_000, resetAfterMs: 120_000, maxFailures: 100, windowMs: 600_000 };
const MID = (): number => 0.5; // no jitter: 0.8 + 0.4 * 0.5 = 1

t.test('delays double from initialMs up to maxMs', async (t) => {
  const budget = new RestartBudget(POLICY, MID);
  const delays = Array.from({ length: 9 }, (_, i) => budget.fail(i, undefined));
  t.same(delays, [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
});

t.test('jitter stays within ±20 %, and never over maxMs', async (t) => {
  const low = new RestartBudget(POLICY, () => 0);
  t.equal(low.fail(0, undefined), 800);
  const high = new RestartBudget(POLICY, () => 0.999_999);
  t.equal(high.fail(0, undefined), 1200);
  for (let i = 1; i < 12; i++) t.ok((high.fail(i, undefined) ?? Infinity) <= POLICY.maxMs, `failure ${i + 1} at most maxMs`);

  const real = new RestartBudget({ ...POLICY, maxFailures: 1000 });
  const outOfBounds: string[] = [];
  for (let i = 0; i < 200; i++) {
    const d = real.fail(i, undefined) ?? NaN;
    const base = Math.min(POLICY.maxMs, POLICY.initialMs * 2 ** i);
    if (!(d >= 0.8 * base && d <= Math.min(1.2 * base, POLICY.maxMs))) outOfBounds.push(`${d} ms for base ${base} ms`);
  }
  t.same(outOfBounds, [], '200 delays with Math.random within bounds');
});

t.test('a long healthy run starts the backoff over; a short one does not', async (t) => {
  const budget = new RestartBudget(POLICY, MID);
  t.equal(budget.fail(0, undefined), 1000);
  t.equal(budget.fail(10, undefined), 2000);
  t.equal(budget.fail(200_000, 200_000 - 60_000), 4000, 'healthy 60 s: keeps doubling');
  t.equal(budget.fail(400_000, 400_000 - 120_000), 1000, 'healthy 120 s: from the start');
  t.equal(budget.fail(400_010, undefined), 2000);
});

t.test('crash loop: maxFailures within windowMs ends the restarts', async (t) => {
  const policy = { ...POLICY, maxFailures: 3, windowMs: 10_000 };
  const budget = new RestartBudget(policy, MID);
  t.type(budget.fail(0, undefined), 'number');
  t.type(budget.fail(1000, undefined), 'number');
  t.equal(budget.failuresInWindow, 2);
  t.equal(budget.fail(2000, undefined), undefined, 'third failure in the window: crash loop');
  t.equal(budget.failuresInWindow, 3);

  const spread = new RestartBudget(policy, MID);
  t.type(spread.fail(0, undefined), 'number');
  t.type(spread.fail(5000, undefined), 'number');
  t.type(spread.fail(10_001, undefined), 'number', 'the first failure has left the window');
  t.equal(spread.failuresInWindow, 2);
  t.equal(spread.fail(12_000, undefined), undefined);
});
