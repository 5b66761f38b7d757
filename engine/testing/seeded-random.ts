// Seeded pseudo-random numbers for property and fuzz tests: mulberry32, small, fast and the same on every
// machine, so a failing run is replayed from the seed it printed.

/** A generator of numbers in [0, 1) from `seed` (mulberry32). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The draws a test scenario is built from, all from one seeded sequence. */
export interface SeededDraws {
  /** A number in [0, 1). */
  next(): number;
  /** A whole number in [0, below). */
  int(below: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  /** `length` bytes filled four at a time; a tail shorter than four bytes stays zero. */
  bytes(length: number): Buffer;
}

export function seededDraws(seed: number): SeededDraws {
  const next = seededRandom(seed);
  return {
    next,
    int: (below) => Math.floor(next() * below),
    chance: (p) => next() < p,
    bytes(length) {
      const out = Buffer.alloc(length);
      for (let at = 0; at + 4 <= length; at += 4) out.writeUInt32LE((next() * 2 ** 32) >>> 0, at);
      return out;
    },
  };
}
