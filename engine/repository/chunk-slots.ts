// The memory a backup's main thread and its chunk workers share: a fixed number of slots, each holding one
// batch of units on its way in and the group blob of its new units on the way out. Nothing is copied or transferred between the
// threads and nothing is allocated per batch: transferring fresh megabyte buffers instead made V8 count each as
// new external memory and collect garbage every few batches.
import { CHUNK_ID_BYTES, maxGroupBytes } from './chunk-codec.ts';

export interface SlotSizes {
  slots: number;
  /** Units per batch, at most. */
  units: number;
  /** Bytes per unit, at most. */
  unitBytes: number;
}

export interface ChunkSlot {
  index: number;
  /** The units' bytes, back to back. */
  input: Buffer;
  lengths: Uint32Array;
  /** Written by the worker: ids, 32 bytes each. */
  ids: Buffer;
  /** Written by the worker: 1 for each unit that is a member of the group (the others are probably known). */
  members: Uint8Array;
  /** Written by the worker: the group blob. */
  output: Buffer;
}

/** A request to encode the first `count` units of a slot; `force` encodes even probably known ids. */
export interface BatchRequest {
  seq: number;
  slot: number;
  count: number;
  force: boolean;
}

export interface BatchReply {
  seq: number;
  /** Length of the group blob in the slot's output; 0 when no unit is new. */
  groupLength: number;
}

const align8 = (n: number) => Math.ceil(n / 8) * 8;

export class ChunkSlots {
  readonly shared: SharedArrayBuffer;
  readonly sizes: SlotSizes;
  readonly #slots: ChunkSlot[] = [];

  constructor(sizes: SlotSizes, shared?: SharedArrayBuffer) {
    const { units, unitBytes } = sizes;
    const parts = [
      units * unitBytes,
      units * 4,
      units * CHUNK_ID_BYTES,
      units,
      maxGroupBytes(units, units * unitBytes),
    ].map(align8);
    const slotBytes = parts.reduce((sum, n) => sum + n, 0);
    this.sizes = sizes;
    this.shared = shared ?? new SharedArrayBuffer(slotBytes * sizes.slots);
    for (let index = 0; index < sizes.slots; index++) {
      let at = index * slotBytes;
      const next = (i: number) => {
        const start = at;
        at += parts[i]!;
        return start;
      };
      this.#slots.push({
        index,
        input: Buffer.from(this.shared, next(0), units * unitBytes),
        lengths: new Uint32Array(this.shared, next(1), units),
        ids: Buffer.from(this.shared, next(2), units * CHUNK_ID_BYTES),
        members: new Uint8Array(this.shared, next(3), units),
        output: Buffer.from(this.shared, next(4), maxGroupBytes(units, units * unitBytes)),
      });
    }
  }

  slot(index: number): ChunkSlot {
    const slot = this.#slots[index];
    if (!slot) throw new Error(`no chunk slot ${index}`);
    return slot;
  }
}
