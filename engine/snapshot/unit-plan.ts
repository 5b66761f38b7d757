// Turns the byte ranges a backup must capture (used blocks, minus the container's own blocks, limited to the
// changed blocks when tracking says so) into the per-unit starting states of a snapshot session.

import type { ByteRange } from '../device/types.ts';
import { PENDING, UnitStates } from './unit-states.ts';

/**
 * 64 KiB copy units. Small enough that a write to a not-yet-copied unit costs the writer one short read
 * (64 KiB ≈ 0.1 ms on an SSD) and that free space inside a unit rarely wastes much (file systems allocate
 * in runs); large enough that the state of a 2 TB disk is 32 Mi units = 8 MiB at 2 bits each, and that the
 * copier still reads in 1–4 MiB requests by merging runs of units. A multiple of every common file-system
 * block (4 KiB), so a unit never splits a block.
 */
export const DEFAULT_UNIT_SIZE = 64 * 1024;
export const FILE_SYSTEM_BLOCK = 4096;

export interface UnitPlanInput {
  size: number;
  unitSize: number;
  usedRanges: readonly ByteRange[];
  excludedRanges?: readonly ByteRange[];
  onlyRanges?: readonly ByteRange[];
}

export interface UnitPlan {
  unitCount: number;
  states: UnitStates;
  /** Sorted, merged; writes entirely inside these pass without interception. */
  excluded: ByteRange[];
  /** Pending units that also hold excluded bytes: writes there are checked byte-precisely. */
  mixedUnits: Set<number>;
}

export function checkUnitSize(unitSize: number): void {
  if (!Number.isInteger(unitSize) || unitSize < FILE_SYSTEM_BLOCK || unitSize % FILE_SYSTEM_BLOCK !== 0) {
    throw new Error(
      `copy unit size ${unitSize} is not a positive multiple of ${FILE_SYSTEM_BLOCK} bytes; choose e.g. 65536`,
    );
  }
}

/** Sorts, clips to [0, size) and merges overlapping or touching ranges. */
export function normalizeRanges(ranges: readonly ByteRange[], size: number): ByteRange[] {
  const clipped: ByteRange[] = [];
  for (const range of ranges) {
    const start = Math.max(0, range.start);
    const end = Math.min(size, range.start + range.length);
    if (end > start) clipped.push({ start, length: end - start });
  }
  clipped.sort((a, b) => a.start - b.start);
  const merged: ByteRange[] = [];
  for (const range of clipped) {
    const last = merged[merged.length - 1];
    if (last && range.start <= last.start + last.length) {
      last.length = Math.max(last.length, range.start + range.length - last.start);
    } else {
      merged.push({ ...range });
    }
  }
  return merged;
}

/** a ∩ b for normalized lists. */
export function intersectRanges(a: readonly ByteRange[], b: readonly ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const ra = a[i]!;
    const rb = b[j]!;
    const start = Math.max(ra.start, rb.start);
    const end = Math.min(ra.start + ra.length, rb.start + rb.length);
    if (end > start) out.push({ start, length: end - start });
    if (ra.start + ra.length < rb.start + rb.length) i++;
    else j++;
  }
  return out;
}

/** a − b for normalized lists. */
export function subtractRanges(a: readonly ByteRange[], b: readonly ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  let j = 0;
  for (const range of a) {
    let start = range.start;
    const end = range.start + range.length;
    while (j < b.length && b[j]!.start + b[j]!.length <= start) j++;
    let k = j;
    while (k < b.length && b[k]!.start < end) {
      const cut = b[k]!;
      if (cut.start > start) out.push({ start, length: cut.start - start });
      start = Math.max(start, cut.start + cut.length);
      k++;
    }
    if (end > start) out.push({ start, length: end - start });
  }
  return out;
}

/** True when [start, end) lies entirely inside one range of the normalized list. */
export function coveredBy(ranges: readonly ByteRange[], start: number, end: number): boolean {
  let low = 0;
  let high = ranges.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const range = ranges[middle]!;
    if (range.start + range.length <= start) low = middle + 1;
    else if (range.start > start) high = middle - 1;
    else return range.start + range.length >= end;
  }
  return false;
}

export function planUnits(input: UnitPlanInput): UnitPlan {
  const { size, unitSize } = input;
  checkUnitSize(unitSize);
  const unitCount = Math.ceil(size / unitSize);
  const states = new UnitStates(unitCount);
  let capture = normalizeRanges(input.usedRanges, size);
  if (input.onlyRanges) capture = intersectRanges(capture, normalizeRanges(input.onlyRanges, size));
  const excluded = normalizeRanges(input.excludedRanges ?? [], size);
  capture = subtractRanges(capture, excluded);
  for (const range of capture) {
    const first = Math.floor(range.start / unitSize);
    const last = Math.floor((range.start + range.length - 1) / unitSize);
    states.fill(first, last + 1, PENDING);
  }
  const mixedUnits = new Set<number>();
  for (const range of excluded) {
    const first = Math.floor(range.start / unitSize);
    const last = Math.floor((range.start + range.length - 1) / unitSize);
    // Only the edge units of an excluded range can be partly excluded.
    for (const unit of first === last ? [first] : [first, last]) {
      if (states.get(unit) === PENDING) mixedUnits.add(unit);
    }
  }
  return { unitCount, states, excluded, mixedUnits };
}
