// A set of chunk ids shared by the backup's main thread and its worker threads (SharedArrayBuffer), so a
// worker can skip compressing and encrypting a chunk the repository already holds. It keeps 8 bytes of each
// id: a hit is only "probably known" and the main thread confirms it against the index; a miss is certain.
// The main thread is the only writer. When it is full it stops taking ids (workers then encode everything).

const EMPTY = 0n;
const MAX_LOAD = 0.7;

function prefixOf(id: Uint8Array): bigint {
  const view = new DataView(id.buffer, id.byteOffset, 8);
  const prefix = view.getBigInt64(0, true);
  return prefix === EMPTY ? 1n : prefix;
}

export class KnownIds {
  readonly buffer: SharedArrayBuffer;
  readonly #slots: BigInt64Array;
  readonly #mask: number;
  #count = 0;

  /** Room for about `capacity` ids (rounded up to a power of two, at most 2^24 slots: 128 MiB). */
  constructor(capacityOrBuffer: number | SharedArrayBuffer) {
    if (typeof capacityOrBuffer === 'number') {
      let slots = 1024;
      while (slots < capacityOrBuffer / MAX_LOAD && slots < 1 << 24) slots *= 2;
      this.buffer = new SharedArrayBuffer(slots * 8);
    } else {
      this.buffer = capacityOrBuffer;
    }
    this.#slots = new BigInt64Array(this.buffer);
    this.#mask = this.#slots.length - 1;
  }

  add(id: Uint8Array): void {
    if (this.#count >= this.#slots.length * MAX_LOAD) return;
    const prefix = prefixOf(id);
    for (let slot = Number(prefix & BigInt(this.#mask)); ; slot = (slot + 1) & this.#mask) {
      const held = Atomics.load(this.#slots, slot);
      if (held === prefix) return;
      if (held === EMPTY) {
        Atomics.store(this.#slots, slot, prefix);
        this.#count += 1;
        return;
      }
    }
  }

  mightContain(id: Uint8Array): boolean {
    const prefix = prefixOf(id);
    for (let slot = Number(prefix & BigInt(this.#mask)); ; slot = (slot + 1) & this.#mask) {
      const held = Atomics.load(this.#slots, slot);
      if (held === prefix) return true;
      if (held === EMPTY) return false;
    }
  }
}
