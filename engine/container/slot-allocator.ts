// Fixed-size slots inside a file or partition container: which slot holds which unit, and which are free.
// A stack of free slots (lowest first) keeps the file's used region compact; O(1) allocate and release.

export class SlotAllocator {
  private freeSlots: Int32Array;
  private freeCount = 0;
  private slotCountNow = 0;
  private readonly slotOfUnit = new Map<number, number>();

  constructor(slotCount: number) {
    this.freeSlots = new Int32Array(Math.max(16, slotCount));
    this.grow(slotCount);
  }

  get slotCount(): number {
    return this.slotCountNow;
  }
  get usedSlots(): number {
    return this.slotOfUnit.size;
  }

  /** Adds slots [slotCount, newSlotCount). */
  grow(newSlotCount: number): void {
    if (newSlotCount <= this.slotCountNow) return;
    if (newSlotCount > this.freeSlots.length) {
      const bigger = new Int32Array(Math.max(newSlotCount, this.freeSlots.length * 2));
      bigger.set(this.freeSlots.subarray(0, this.freeCount));
      this.freeSlots = bigger;
    }
    // Push highest first so the lowest slot is allocated first.
    const added = newSlotCount - this.slotCountNow;
    this.freeSlots.copyWithin(added, 0, this.freeCount);
    for (let i = 0; i < added; i++) this.freeSlots[i] = newSlotCount - 1 - i;
    this.freeCount += added;
    this.slotCountNow = newSlotCount;
  }

  /** The slot now reserved for `unit`, or -1 when every slot is taken. */
  allocate(unit: number): number {
    if (this.slotOfUnit.has(unit)) throw new Error(`unit ${unit} already has a slot`);
    if (this.freeCount === 0) return -1;
    const slot = this.freeSlots[--this.freeCount]!;
    this.slotOfUnit.set(unit, slot);
    return slot;
  }

  slotOf(unit: number): number {
    return this.slotOfUnit.get(unit) ?? -1;
  }

  release(unit: number): void {
    const slot = this.slotOfUnit.get(unit);
    if (slot === undefined) return;
    this.slotOfUnit.delete(unit);
    this.freeSlots[this.freeCount++] = slot;
  }
}
