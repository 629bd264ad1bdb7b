// Shared harness of the reliability suites. The directory name starts with a dot because tap, given a
// directory, runs every .js file in it but skips dot directories: these modules are not test files.

// CI sizes keep the whole directory near a minute on a shared 2-core machine; RELIABILITY_FULL=1 (or
// the report script) runs the sizes the issue asks for.
export const FULL = process.env.RELIABILITY_FULL === '1';

export interface Sizes {
  aborts: { iterations: number; concurrency: number; uploadBytes: number };
  slowClient: { readMs: number };
  load: { concurrency: number; durationMs: number; faultRate: number };
  fuzz: { inputs: number; streamBytes: number };
}

export const CI_SIZES: Sizes = {
  aborts: { iterations: 200, concurrency: 10, uploadBytes: 4 * 1024 * 1024 },
  slowClient: { readMs: 2500 },
  load: { concurrency: 100, durationMs: 5000, faultRate: 0.05 },
  fuzz: { inputs: 100_000, streamBytes: 16 * 1024 * 1024 },
};

export const FULL_SIZES: Sizes = {
  aborts: { iterations: 1000, concurrency: 20, uploadBytes: 8 * 1024 * 1024 },
  slowClient: { readMs: 15_000 },
  load: { concurrency: 500, durationMs: 60_000, faultRate: 0.05 },
  fuzz: { inputs: 1_000_000, streamBytes: 64 * 1024 * 1024 },
};

export const SIZES: Sizes = FULL ? FULL_SIZES : CI_SIZES;

/** A number from the environment, for one-off bigger runs of a single suite. */
export function envInt(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || !/^\d+$/.test(text)) return fallback;
  return Number(text);
}
