// Per-unit snapshot state packed 2 bits per unit (free/pending/preserved/copied), with counters per state.
// A 2 TB disk at 64 KiB units is 32 Mi units: 8 MiB of state. The copier and the write path read and change
// single units without allocating; the block map reads whole bytes (4 units) through a lookup table.

export const FREE = 0;
export const PENDING = 1;
export const PRESERVED = 2;
export const COPIED = 3;
export type UnitStateCode = 0 | 1 | 2 | 3;

export class UnitStates {
  readonly unitCount: number;
  /** 4 units per byte, unit i at bits 2*(i%4)..2*(i%4)+1 of byte i>>2. */
  readonly packed: Uint8Array;
  /** Units per state, indexed by state code. */
  readonly counts = new Float64Array(4);

  constructor(unitCount: number) {
    this.unitCount = unitCount;
    this.packed = new Uint8Array(Math.ceil(unitCount / 4));
    this.counts[FREE] = unitCount;
  }

  get(unit: number): UnitStateCode {
    return ((this.packed[unit >>> 2]! >>> ((unit & 3) << 1)) & 3) as UnitStateCode;
  }

  set(unit: number, state: UnitStateCode): void {
    const index = unit >>> 2;
    const shift = (unit & 3) << 1;
    const byte = this.packed[index]!;
    const old = (byte >>> shift) & 3;
    if (old === state) return;
    this.counts[old]!--;
    this.counts[state]!++;
    this.packed[index] = (byte & ~(3 << shift)) | (state << shift);
  }

  /** Sets units [first, end) to `state`; whole bytes at a time in the middle (a 2 TB disk in milliseconds). */
  fill(first: number, end: number, state: UnitStateCode): void {
    let unit = first;
    for (; unit < end && (unit & 3) !== 0; unit++) this.set(unit, state);
    const pattern = state * 0b01010101;
    const firstByte = unit >>> 2;
    const endByte = firstByte + ((end - unit) >>> 2);
    let untouched = 0; // bytes that held 4 free units: the common case, counted in bulk
    for (let index = firstByte; index < endByte; index++) {
      const old = this.packed[index]!;
      if (old === 0) untouched++;
      else for (let i = 0; i < 8; i += 2) this.counts[(old >>> i) & 3]!--;
    }
    this.counts[FREE]! -= 4 * untouched;
    this.counts[state]! += 4 * (endByte - firstByte);
    this.packed.fill(pattern, firstByte, endByte);
    unit += 4 * (endByte - firstByte);
    for (; unit < end; unit++) this.set(unit, state);
  }

  /** Replaces the 4 units of byte `index` (all inside unitCount) with the states packed in `byte`. */
  fillByte(index: number, byte: number): void {
    const old = this.packed[index]!;
    if (old === byte) return;
    for (let i = 0; i < 8; i += 2) {
      this.counts[(old >>> i) & 3]!--;
      this.counts[(byte >>> i) & 3]!++;
    }
    this.packed[index] = byte;
  }

  /** First unit at or after `from` in state `state`, or -1. Skips whole bytes that hold none. */
  findNext(from: number, state: UnitStateCode): number {
    let unit = from;
    while (unit < this.unitCount) {
      if ((unit & 3) === 0) {
        const byte = this.packed[unit >>> 2]!;
        if (!byteHolds(byte, state)) {
          unit += 4;
          continue;
        }
      }
      if (this.get(unit) === state) return unit;
      unit++;
    }
    return -1;
  }
}

function byteHolds(byte: number, state: number): boolean {
  return (
    (byte & 3) === state ||
    ((byte >>> 2) & 3) === state ||
    ((byte >>> 4) & 3) === state ||
    ((byte >>> 6) & 3) === state
  );
}
