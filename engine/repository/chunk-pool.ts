// A fixed pool of worker threads that encode chunks. Units are copied into batches in shared slots
// (chunk-slots.ts); a batch leaves when full or when the copier pauses. The number of slots bounds the work in
// flight, so memory stays bounded and the copier feels backpressure through `submit`. Results are handed to the
// consumer synchronously, while the slot still holds them: it copies what it keeps.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { groupUnits } from './chunk-codec.ts';
import { type BatchReply, type BatchRequest, type ChunkSlot, ChunkSlots } from './chunk-slots.ts';
import type { RepositoryKeys } from './keys.ts';
import type { KnownIds } from './known-ids.ts';

/**
 * Where a batch's results go: the slot holds each unit's id and bytes, which units are members of the group
 * blob, and the blob (`groupLength` bytes of its output; 0 when no unit was new). The other units were probably
 * known, or repeat a member. Everything in the slot is valid only during the call: copy what is kept.
 */
export interface ChunkConsumer {
  batch(tags: readonly number[], slot: ChunkSlot, groupLength: number): void;
}

interface OpenBatch {
  slot: ChunkSlot;
  count: number;
  used: number;
  tags: number[];
  force: boolean;
}

export class ChunkPool {
  readonly #workers: Worker[] = [];
  readonly #slots: ChunkSlots;
  readonly #free: number[] = [];
  /** Per batch in flight: its slot and the caller's tag of each unit. */
  readonly #inFlight = new Map<number, { slot: ChunkSlot; tags: number[] }>();
  readonly #waiting: (() => void)[] = [];
  readonly #consumer: ChunkConsumer;
  #open: OpenBatch | null = null;
  #flushScheduled = false;
  #seq = 0;
  #failure: Error | null = null;

  constructor(
    keys: RepositoryKeys,
    knownIds: KnownIds,
    unitSize: number,
    consumer: ChunkConsumer,
    threads = availableParallelism(),
  ) {
    const count = Math.max(1, threads);
    this.#consumer = consumer;
    // Deep enough that a worker always has queued work when the scheduler runs it: 4 batches per worker.
    // A batch is one group's worth of units.
    this.#slots = new ChunkSlots({ slots: count * 4, units: groupUnits(unitSize), unitBytes: unitSize });
    for (let i = 0; i < count * 4; i++) this.#free.push(i);
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('./chunk-worker.ts', import.meta.url), {
        workerData: {
          encrypted: keys.encrypted,
          dataKey: keys.dataKey,
          idKey: keys.idKey,
          known: knownIds.buffer,
          shared: this.#slots.shared,
          sizes: this.#slots.sizes,
        },
      });
      worker.on('message', (reply: BatchReply) => this.#receive(reply));
      worker.on('error', (error) => this.#fail(error));
      this.#workers.push(worker);
    }
  }

  #wake(): void {
    for (const wake of this.#waiting.splice(0)) wake();
  }

  #receive(reply: BatchReply): void {
    const batch = this.#inFlight.get(reply.seq);
    if (!batch) return;
    this.#inFlight.delete(reply.seq);
    const { slot, tags } = batch;
    try {
      this.#consumer.batch(tags, slot, reply.groupLength);
    } catch (error) {
      this.#fail(error as Error);
    }
    this.#free.push(slot.index);
    this.#flushIfIdle();
    this.#wake();
  }

  #fail(error: Error): void {
    this.#failure ??= error;
    this.#inFlight.clear();
    this.#wake();
  }

  /** Sends the open batch to the next worker. */
  #dispatch(): void {
    const batch = this.#open;
    this.#open = null;
    if (!batch || batch.count === 0) return;
    const seq = this.#seq++;
    this.#inFlight.set(seq, { slot: batch.slot, tags: batch.tags });
    const request: BatchRequest = { seq, slot: batch.slot.index, count: batch.count, force: batch.force };
    this.#workers[seq % this.#workers.length]!.postMessage(request);
  }

  /**
   * Copies the unit into a batch (the caller may reuse its buffer once this resolves); its result reaches the
   * consumer later, under `tag`. Waits while every slot is in use. `force` encodes even a probably known id.
   */
  async submit(tag: number, data: Buffer, force = false): Promise<void> {
    const { units, unitBytes } = this.#slots.sizes;
    if (data.length > unitBytes)
      throw new Error(`a unit of ${data.length} bytes is larger than ${unitBytes}`);
    if (this.#open && this.#open.force !== force) this.#dispatch();
    while (!this.#open && !this.#failure) {
      const index = this.#free.pop();
      if (index !== undefined) {
        this.#open = { slot: this.#slots.slot(index), count: 0, used: 0, tags: [], force };
        break;
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
      // Another submit may have opened a batch meanwhile, maybe of the other kind.
      if (this.#open && (this.#open as OpenBatch).force !== force) this.#dispatch();
    }
    if (this.#failure) throw this.#failure;
    const batch = this.#open!;
    data.copy(batch.slot.input, batch.used);
    batch.slot.lengths[batch.count] = data.length;
    batch.used += data.length;
    batch.count += 1;
    batch.tags.push(tag);
    if (batch.count >= units) this.#dispatch();
    else if (!this.#flushScheduled) {
      // When the copier pauses (between reads), a partial batch leaves if a worker would otherwise sit idle;
      // while every worker is busy it keeps filling: full batches make full groups, which compress best.
      this.#flushScheduled = true;
      setImmediate(() => {
        this.#flushScheduled = false;
        this.#flushIfIdle();
      });
    }
  }

  #flushIfIdle(): void {
    if (this.#inFlight.size < this.#workers.length) this.#dispatch();
  }

  /** Waits until every unit submitted so far (and any submitted meanwhile) has reached the consumer. */
  async drain(): Promise<void> {
    for (;;) {
      this.#dispatch();
      if (this.#failure) throw this.#failure;
      if (this.#inFlight.size === 0 && !this.#open) return;
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
