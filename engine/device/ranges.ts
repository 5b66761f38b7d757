// Sorted, merged lists of byte ranges: what every used-block map is made of. Builders append in order
// and merge adjacent runs so maps of large disks stay small.
import type { ByteRange } from './types.ts';

/** Sorts and merges overlapping or touching ranges; drops empty ones. */
export function mergeRanges(ranges: Iterable<ByteRange>): ByteRange[] {
  const sorted = [...ranges].filter((r) => r.length > 0).sort((a, b) => a.start - b.start);
  const merged: ByteRange[] = [];
  for (const range of sorted) {
    const last = merged[merged.length - 1];
    if (last && range.start <= last.start + last.length) {
      last.length = Math.max(last.length, range.start + range.length - last.start);
    } else {
      merged.push({ start: range.start, length: range.length });
    }
  }
  return merged;
}

/** Total bytes covered by (already merged) ranges. */
export function rangesBytes(ranges: readonly ByteRange[]): number {
  let total = 0;
  for (const r of ranges) total += r.length;
  return total;
}

/** Clips ranges to [0, limit) and moves them by `offset` (e.g. from partition-relative to device-absolute). */
export function shiftRanges(ranges: readonly ByteRange[], offset: number, limit: number): ByteRange[] {
  const shifted: ByteRange[] = [];
  for (const r of ranges) {
    const start = Math.max(0, r.start);
    const end = Math.min(limit, r.start + r.length);
    if (end > start) shifted.push({ start: start + offset, length: end - start });
  }
  return shifted;
}

/** The parts of [0, size) not covered by `ranges` (which must be merged). */
export function invertRanges(ranges: readonly ByteRange[], size: number): ByteRange[] {
  const gaps: ByteRange[] = [];
  let at = 0;
  for (const r of ranges) {
    if (r.start > at) gaps.push({ start: at, length: Math.min(r.start, size) - at });
    at = Math.max(at, r.start + r.length);
    if (at >= size) break;
  }
  if (at < size) gaps.push({ start: at, length: size - at });
  return gaps;
}

/** Collects ranges appended in ascending order, merging each with the previous when they touch. */
export class RangeBuilder {
  readonly ranges: ByteRange[] = [];
  private outOfOrder = false;

  add(start: number, length: number): void {
    if (length <= 0) return;
    const last = this.ranges[this.ranges.length - 1];
    if (last && start < last.start) this.outOfOrder = true;
    if (last && start >= last.start && start <= last.start + last.length) {
      last.length = Math.max(last.length, start + length - last.start);
    } else {
      this.ranges.push({ start, length });
    }
  }

  /** The ranges, sorted and merged. */
  finish(): ByteRange[] {
    return this.outOfOrder ? mergeRanges(this.ranges) : this.ranges;
  }
}

/**
 * Calls `onRun(firstBit, count)` for every run of set bits among the first `bitCount` bits of an
 * LSB-first bitmap (ext, NTFS and FAT-derived bitmaps all number bits this way). Skips empty and full bytes fast.
 */
export function forEachSetRun(
  bitmap: Uint8Array,
  bitCount: number,
  onRun: (firstBit: number, count: number) => void,
): void {
  let runStart = -1;
  const byteCount = Math.min(bitmap.length, Math.ceil(bitCount / 8));
  for (let byteIndex = 0; byteIndex < byteCount; byteIndex++) {
    const byte = bitmap[byteIndex]!;
    const base = byteIndex * 8;
    if (byte === 0) {
      if (runStart >= 0) {
        onRun(runStart, Math.min(base, bitCount) - runStart);
        runStart = -1;
      }
      continue;
    }
    if (byte === 0xff && base + 8 <= bitCount) {
      if (runStart < 0) runStart = base;
      continue;
    }
    for (let bit = 0; bit < 8 && base + bit < bitCount; bit++) {
      if (byte & (1 << bit)) {
        if (runStart < 0) runStart = base + bit;
      } else if (runStart >= 0) {
        onRun(runStart, base + bit - runStart);
        runStart = -1;
      }
    }
  }
  if (runStart >= 0) onRun(runStart, Math.min(byteCount * 8, bitCount) - runStart);
}
