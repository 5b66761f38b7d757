// A fixed pool of worker threads that encode chunks. Units are gathered into batches (one message per batch
// each way), work in flight is bounded so memory stays bounded, and the copier feels backpressure through the
// promise returned by `submit`. Ids the repository probably holds (KnownIds) come back not encoded.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { EncodedChunk } from './chunk-codec.ts';
import type { BatchReply, BatchRequest } from './chunk-worker.ts';
import type { RepositoryKeys } from './keys.ts';
import type { KnownIds } from './known-ids.ts';

/** Either the encoded chunk, or (for a probably known id) the id, and the unit's bytes if it was not known after all. */
export type PoolResult =
  | { kind: 'encoded'; chunk: EncodedChunk }
  | { kind: 'known'; id: Buffer; data: Buffer | null };

interface Pending {
  resolve(result: PoolResult): void;
  reject(error: Error): void;
}

interface OpenBatch {
  buffer: Buffer;
  used: number;
  lengths: number[];
  pending: Pending[];
  force: boolean;
}

/** Units per batch: 16 × 64 KiB = 1 MiB per message. */
const BATCH_UNITS = 16;

export class ChunkPool {
  readonly #workers: Worker[] = [];
  readonly #inFlight = new Map<number, Pending[]>();
  /** Per batch in flight: each unit's length. */
  readonly #lengths = new Map<number, number[]>();
  readonly #idle: (() => void)[] = [];
  readonly #maxUnitsInFlight: number;
  readonly #unitSize: number;
  /** Batch buffers back from the workers, reused: fresh megabyte buffers cost page faults on every batch. */
  readonly #freeBuffers: ArrayBuffer[] = [];
  readonly #confirmKnown: (id: Buffer) => boolean;
  #unitsInFlight = 0;
  #open: OpenBatch | null = null;
  #flushScheduled = false;
  #batchSeq = 0;
  #next = 0;
  #failure: Error | null = null;

  /** `confirmKnown` says whether a probably known id is really known (the bytes are kept only if not). */
  constructor(
    keys: RepositoryKeys,
    knownIds: KnownIds,
    unitSize: number,
    confirmKnown: (id: Buffer) => boolean,
    threads = availableParallelism(),
  ) {
    const count = Math.max(1, threads);
    this.#confirmKnown = confirmKnown;
    this.#unitSize = unitSize;
    // Deep enough that a worker always has queued work when the scheduler runs it: 4 batches per worker.
    this.#maxUnitsInFlight = count * BATCH_UNITS * 4;
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('./chunk-worker.ts', import.meta.url), {
        workerData: {
          encrypted: keys.encrypted,
          dataKey: keys.dataKey,
          idKey: keys.idKey,
          known: knownIds.buffer,
        },
      });
      worker.on('message', (reply: BatchReply) => this.#receive(reply));
      worker.on('error', (error) => this.#fail(error));
      this.#workers.push(worker);
    }
  }

  #receive(reply: BatchReply): void {
    const pending = this.#inFlight.get(reply.batch);
    if (!pending) return;
    this.#inFlight.delete(reply.batch);
    const lengths = this.#lengths.get(reply.batch)!;
    this.#lengths.delete(reply.batch);
    const ids = Buffer.from(reply.ids);
    const blobs = Buffer.from(reply.blobs);
    const data = Buffer.from(reply.data);
    let blobAt = 0;
    let dataAt = 0;
    pending.forEach((unit, i) => {
      const id = ids.subarray(i * 32, i * 32 + 32);
      const blobLength = reply.blobLengths[i]!;
      const dataLength = lengths[i]!;
      if (blobLength < 0) {
        // The batch buffer is reused: keep a copy of the bytes only when the guess was wrong.
        const bytes = this.#confirmKnown(id) ? null : Buffer.from(data.subarray(dataAt, dataAt + dataLength));
        unit.resolve({ kind: 'known', id, data: bytes });
      } else {
        const blob = blobs.subarray(blobAt, blobAt + blobLength);
        blobAt += blobLength;
        unit.resolve({ kind: 'encoded', chunk: { id, flags: reply.flags[i]!, rawLength: dataLength, blob } });
      }
      dataAt += dataLength;
    });
    this.#freeBuffers.push(reply.data);
    this.#unitsInFlight -= pending.length;
    for (const wake of this.#idle.splice(0)) wake();
  }

  #fail(error: Error): void {
    this.#failure = error;
    for (const pending of this.#inFlight.values()) for (const unit of pending) unit.reject(error);
    this.#inFlight.clear();
    for (const wake of this.#idle.splice(0)) wake();
  }

  /** Sends the open batch to the next worker. */
  #dispatch(): void {
    const batch = this.#open;
    this.#open = null;
    if (!batch || batch.lengths.length === 0) return;
    const seq = this.#batchSeq++;
    this.#inFlight.set(seq, batch.pending);
    this.#lengths.set(seq, batch.lengths);
    const worker = this.#workers[this.#next++ % this.#workers.length]!;
    // The batch owns its ArrayBuffer (allocUnsafeSlow), so it can be transferred instead of copied.
    const data = batch.buffer.buffer as ArrayBuffer;
    const request: BatchRequest = { batch: seq, data, lengths: batch.lengths, force: batch.force };
    worker.postMessage(request, [data]);
  }

  /**
   * Copies the unit into a batch (the caller may reuse its buffer once this resolves) and returns the promise of
   * its result. Waits while too much work is in flight. `force` encodes even a probably known id.
   */
  async submit(data: Buffer, force = false): Promise<{ result: Promise<PoolResult> }> {
    while (this.#unitsInFlight >= this.#maxUnitsInFlight && !this.#failure) {
      this.#dispatch();
      await new Promise<void>((resolve) => this.#idle.push(resolve));
    }
    if (this.#failure) throw this.#failure;
    if (
      this.#open &&
      (this.#open.force !== force || this.#open.used + data.length > this.#open.buffer.length)
    ) {
      this.#dispatch();
    }
    const size = BATCH_UNITS * Math.max(this.#unitSize, data.length);
    const recycled = this.#freeBuffers.pop();
    this.#open ??= {
      buffer: recycled && recycled.byteLength >= size ? Buffer.from(recycled) : Buffer.allocUnsafeSlow(size),
      used: 0,
      lengths: [],
      pending: [],
      force,
    };
    const batch = this.#open;
    data.copy(batch.buffer, batch.used);
    batch.used += data.length;
    batch.lengths.push(data.length);
    this.#unitsInFlight += 1;
    const result = new Promise<PoolResult>((resolve, reject) => batch.pending.push({ resolve, reject }));
    if (batch.lengths.length >= BATCH_UNITS) this.#dispatch();
    else if (!this.#flushScheduled) {
      // A partial batch leaves when the copier pauses (end of a read, end of the backup).
      this.#flushScheduled = true;
      setImmediate(() => {
        this.#flushScheduled = false;
        this.#dispatch();
      });
    }
    return { result };
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
