// Sets of units given as byte ranges (the used map a layout reports, the blocks a tap saw change), asked one
// segment at a time: a 16 TB disk's bitmap would be 32 MiB per map, a segment's is 2 KiB.
import type { ByteRange } from '../device/types.ts';
import { bitmapBytes } from './segment.ts';

export class UnitRanges {
  /** Merged [first, end) unit runs in order; null: every unit. */
  readonly #starts: Float64Array | null;
  readonly #ends: Float64Array | null;
  readonly unitCount: number;

  constructor(ranges: readonly ByteRange[] | null, unitSize: number, unitCount: number) {
    this.unitCount = unitCount;
    if (ranges === null) {
      this.#starts = null;
      this.#ends = null;
      return;
    }
    const runs = ranges
      .filter((r) => r.length > 0)
      .map((r) => [
        Math.floor(r.start / unitSize),
        Math.min(unitCount, Math.floor((r.start + r.length - 1) / unitSize) + 1),
      ])
      .filter(([first, end]) => first! < end!)
      .sort((a, b) => a[0]! - b[0]!);
    const starts: number[] = [];
    const ends: number[] = [];
    for (const [first, end] of runs) {
      if (ends.length > 0 && first! <= ends[ends.length - 1]!)
        ends[ends.length - 1] = Math.max(ends[ends.length - 1]!, end!);
      else {
        starts.push(first!);
        ends.push(end!);
      }
    }
    this.#starts = Float64Array.from(starts);
    this.#ends = Float64Array.from(ends);
  }

  /** Index of the first run ending after `unit`. */
  #firstRunAfter(unit: number): number {
    const ends = this.#ends!;
    let low = 0;
    let high = ends.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (ends[mid]! <= unit) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** Bitmap (LSB first) of units [first, first + count) in the set. */
  bits(first: number, count: number): Uint8Array {
    const out = new Uint8Array(bitmapBytes(count));
    if (this.#starts === null) {
      for (let u = 0; u < count; u++) out[u >>> 3]! |= 1 << (u & 7);
      return out;
    }
    const end = first + count;
    for (let run = this.#firstRunAfter(first); run < this.#starts.length && this.#starts[run]! < end; run++) {
      const from = Math.max(first, this.#starts[run]!) - first;
      const to = Math.min(end, this.#ends![run]!) - first;
      for (let u = from; u < to; u++) out[u >>> 3]! |= 1 << (u & 7);
    }
    return out;
  }

  /** Whether any unit of [first, first + count) is in the set. */
  touches(first: number, count: number): boolean {
    if (this.#starts === null) return count > 0;
    const run = this.#firstRunAfter(first);
    return run < this.#starts.length && this.#starts[run]! < first + count;
  }

  /** Units in the set. */
  count(): number {
    if (this.#starts === null) return this.unitCount;
    let total = 0;
    for (let run = 0; run < this.#starts.length; run++) total += this.#ends![run]! - this.#starts[run]!;
    return total;
  }

  has(unit: number): boolean {
    if (this.#starts === null) return unit < this.unitCount;
    const run = this.#firstRunAfter(unit);
    return run < this.#starts.length && this.#starts[run]! <= unit;
  }
}

export function countBits(bitmap: Uint8Array, count: number): number {
  let total = 0;
  for (let u = 0; u < count; u++) total += (bitmap[u >>> 3]! >>> (u & 7)) & 1;
  return total;
}
