// Seeded damage to an image in memory, undone after each case: the fuzz tests damage one copy of a file
// system's bytes thousands of times instead of copying it for every case.

/** Sets one to eight random bytes inside `ranges` to random values; returns each changed byte's old value. */
export function flipBytesWithin(
  bytes: Buffer,
  ranges: { start: number; length: number }[],
  next: () => number,
) {
  const saved = new Map<number, number>();
  for (let flip = 0; flip < 1 + Math.floor(next() * 8); flip++) {
    const range = ranges[Math.floor(next() * ranges.length)]!;
    const at = range.start + Math.floor(next() * range.length);
    if (!saved.has(at)) saved.set(at, bytes[at]!);
    bytes[at] = Math.floor(next() * 256);
  }
  return saved;
}

/** Puts back the bytes a flip (or any damage that recorded old values) changed. */
export function restoreBytes(bytes: Buffer, saved: Map<number, number>): void {
  for (const [at, value] of saved) bytes[at] = value;
}
