/**
 * How many cases each property runs: FUZZ_RUNS (npm run fuzz sets 100000), else a count that
 * keeps `npm test` quick. FUZZ_SEED replays a failing run (fast-check prints the seed).
 */
export const RUNS = Number(process.env.FUZZ_RUNS ?? 0) || undefined;

export function runs(ciDefault: number): number {
  return RUNS ?? ciDefault;
}

export const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);

/** A test timeout that grows with the number of runs (ms per run, at least a minute). */
export function timeoutFor(count: number, msPerRun: number): number {
  return Math.max(60_000, count * msPerRun * 3);
}
