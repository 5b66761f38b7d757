// How hard to hold back the writers of a protected disk while its dm snapshot's copy-on-write store fills.
// dm-snapshot drops the whole snapshot when the store overflows (every later read of it fails), so Diskline
// never lets it: below the high watermark writers run free; above it their write rate is limited to what the
// store's headroom can absorb over the copy still to do (half of it, for margin); within the hold margin of
// capacity they are held to a trickle (one 4 KiB write a second: the kernel's I/O limit cannot be zero). A
// chunk the store holds is given back only when the snapshot is dropped at the end of the backup: dm-snapshot
// has no way to release a chunk the copier no longer needs. And whatever the fill, a limit holds until the
// watcher's next reading can change it: writers may write at it for that long unchecked, so it never lets them
// carry the store past the hold margin before then (the watcher's reaction time; for a small store and a slow,
// busy machine that is a real limit even below the high watermark).

export interface StoreFill {
  usedBytes: number;
  capacityBytes: number;
}

export interface WriteLimitInputs extends StoreFill {
  /** Bytes the copier still has to read, and how fast it has been reading (bytes/s, 0 when unknown). */
  remainingCopyBytes: number;
  copyBytesPerSecond: number;
  /** Fraction of capacity past which writers are throttled (default 0.5). */
  highWatermark?: number;
  /** Headroom at which writers are held (default: 1/16 of capacity, at least 256 KiB). */
  holdMarginBytes?: number;
  /** Seconds until the watcher can next change the limit (0 or absent: no cap for it). */
  reactionSeconds?: number;
}

export type WriteLimit =
  | { state: 'normal' }
  | { state: 'throttled' | 'held'; writeBytesPerSecond: number; writeIopsPerSecond: number };

/** The trickle a held writer still gets: one 4 KiB block a second. */
export const HELD_BYTES_PER_SECOND = 4096;
/** The kernel refuses io.max limits below 2 (EINVAL): the byte limit is what holds. */
const MIN_IOPS_LIMIT = 2;
/** The least a throttled writer gets (above the hold). */
const MIN_THROTTLED_BYTES_PER_SECOND = 64 * 1024;
/** A cap above this slows no disk: writers run free. */
const UNLIMITED_BYTES_PER_SECOND = 2 ** 31;

export function holdMargin(capacityBytes: number): number {
  return Math.max(256 * 1024, Math.floor(capacityBytes / 16));
}

export function writeLimitFor(inputs: WriteLimitInputs): WriteLimit {
  const high = inputs.highWatermark ?? 0.5;
  const margin = inputs.holdMarginBytes ?? holdMargin(inputs.capacityBytes);
  const headroom = inputs.capacityBytes - inputs.usedBytes;
  if (headroom <= margin) return held();
  const spare = headroom - margin;
  // Until the next reading: at most half the spare room at this rate.
  const reaction = inputs.reactionSeconds ?? 0;
  const reactionCap = reaction > 0 ? Math.floor(spare / reaction / 2) : Number.POSITIVE_INFINITY;
  let rate = reactionCap;
  if (inputs.usedBytes >= inputs.capacityBytes * high) {
    // Unknown copy rate (the copier has just started): assume the worst the next second can bring.
    const seconds =
      inputs.copyBytesPerSecond > 0 ? Math.max(1, inputs.remainingCopyBytes / inputs.copyBytesPerSecond) : 10;
    rate = Math.min(rate, Math.max(MIN_THROTTLED_BYTES_PER_SECOND, Math.floor(spare / seconds / 2)));
  } else if (reactionCap >= UNLIMITED_BYTES_PER_SECOND) return { state: 'normal' };
  if (rate < MIN_THROTTLED_BYTES_PER_SECOND) return held();
  return {
    state: 'throttled',
    writeBytesPerSecond: rate,
    writeIopsPerSecond: Math.max(MIN_IOPS_LIMIT, Math.floor(rate / 4096)),
  };
}

function held(): WriteLimit {
  return { state: 'held', writeBytesPerSecond: HELD_BYTES_PER_SECOND, writeIopsPerSecond: MIN_IOPS_LIMIT };
}
