// A fixed pool of worker threads (possibly none: then the main thread decodes) that decode restore spans
// (restore-worker.ts, restore-span.ts), over a fixed set of slots in one SharedArrayBuffer. The caller takes a free slot, reads a span of pack bytes into its input, submits it, writes
// the decoded units from its output and gives the slot back. Messages carry only offsets: nothing is copied or
// transferred between threads, and nothing is allocated per span.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { alignmentGap } from '../native/index.ts';
import type { RepositoryKeys } from './keys.ts';
import { decodeSpan, type SpanPlan, type SpanReply, type SpanRequest } from './restore-span.ts';

const PAGE = 4096;

export interface Slot {
  index: number;
  /** Where the span's pack bytes are read to. */
  input: Buffer;
  /** Where the decoded units appear, back to back, once `decode` resolves. */
  output: Buffer;
}

export class SpanDecodePool {
  readonly #workers: Worker[] = [];
  readonly #pending = new Map<
    number,
    { resolve(): void; reject(error: Error): void; onDamage(message: string): Error }
  >();
  readonly #shared: SharedArrayBuffer;
  readonly #slots: Slot[] = [];
  readonly #free: number[] = [];
  readonly #slotBytes: number;
  readonly #inputBytes: number;
  /** Bytes each part of a slot takes, rounded up to whole pages. */
  readonly #inputRegion: number;
  readonly #outputRegion: number;
  /** Where the first slot starts: the first page-aligned address of the shared memory. */
  readonly #first: number;
  readonly #maxUnits: number;
  readonly #keys: RepositoryKeys;
  readonly #whole: Buffer;
  #seq = 0;
  #failure: Error | null = null;

  constructor(
    keys: RepositoryKeys,
    sizes: { inputBytes: number; outputBytes: number; maxUnits: number; slots: number },
    threads: number,
  ) {
    this.#inputBytes = sizes.inputBytes;
    this.#maxUnits = sizes.maxUnits;
    // Every output starts on a page, so the target can be written with O_DIRECT straight from it.
    const pages = (n: number) => Math.ceil(n / PAGE) * PAGE;
    this.#inputRegion = pages(sizes.inputBytes);
    this.#outputRegion = pages(sizes.outputBytes);
    this.#slotBytes = this.#inputRegion + this.#outputRegion + pages(32 * sizes.maxUnits);
    this.#shared = new SharedArrayBuffer(this.#slotBytes * sizes.slots + PAGE);
    this.#first = alignmentGap(new Uint8Array(this.#shared), PAGE);
    for (let index = 0; index < sizes.slots; index++) {
      const base = this.#first + index * this.#slotBytes;
      this.#slots.push({
        index,
        input: Buffer.from(this.#shared, base, sizes.inputBytes),
        output: Buffer.from(this.#shared, base + this.#inputRegion, sizes.outputBytes),
      });
      this.#free.push(index);
    }
    this.#keys = keys;
    this.#whole = Buffer.from(this.#shared);
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(new URL('./restore-worker.ts', import.meta.url), {
        workerData: {
          encrypted: keys.encrypted,
          dataKey: keys.dataKey,
          idKey: keys.idKey,
          shared: this.#shared,
        },
      });
      worker.on('message', (reply: SpanReply) => this.#receive(reply));
      worker.on('error', (error) => this.#fail(error));
      this.#workers.push(worker);
    }
  }

  /**
   * Workers to decode on: none on two cores (measured on a 2-core machine: decoding on the main thread with
   * reads and writes overlapped was ~20% faster than with one worker, which costs ~0.2 CPU-s to start and a
   * core the kernel's copies need); beyond that, leave the main thread and one core for the I/O.
   */
  static defaultThreads(): number {
    return Math.max(0, availableParallelism() - 2);
  }

  /** A free slot; the caller holds at most `slots` at once. */
  take(): Slot {
    const index = this.#free.pop();
    if (index === undefined)
      throw new Error('restore: no free decode slot (more spans in flight than slots)');
    return this.#slots[index]!;
  }

  give(slot: Slot): void {
    this.#free.push(slot.index);
  }

  #receive(reply: SpanReply): void {
    const pending = this.#pending.get(reply.seq);
    if (!pending) return;
    this.#pending.delete(reply.seq);
    if (reply.damaged !== null) pending.reject(pending.onDamage(reply.damaged));
    else pending.resolve();
  }

  #fail(error: Error): void {
    this.#failure = error;
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
  }

  /**
   * Decodes the first `inputLength` bytes of the slot's input (group blobs) into its output: the units of the
   * plan, back to back, unit i being chunk ids[i]. A damaged chunk rejects with `onDamage(message)`.
   */
  decode(
    slot: Slot,
    inputLength: number,
    ids: Buffer[],
    plan: SpanPlan,
    onDamage: (message: string) => Error,
  ): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (ids.length > this.#maxUnits || inputLength > this.#inputBytes)
      return Promise.reject(
        new Error(`restore: span of ${ids.length} units, ${inputLength} bytes is too large`),
      );
    const base = this.#first + slot.index * this.#slotBytes;
    const idsOffset = base + this.#inputRegion + this.#outputRegion;
    const idBytes = Buffer.from(this.#shared, idsOffset, 32 * ids.length);
    for (const [i, id] of ids.entries()) id.copy(idBytes, i * 32);
    const seq = this.#seq++;
    const request: SpanRequest = {
      seq,
      inputOffset: base,
      inputLength,
      outputOffset: base + this.#inputRegion,
      idsOffset,
      ...plan,
    };
    const promise = new Promise<void>((resolve, reject) =>
      this.#pending.set(seq, { resolve, reject, onDamage }),
    );
    if (this.#workers.length === 0) {
      // No worker: decode here (the span's input is plain memory, so no copy is needed).
      const damaged = decodeSpan(this.#keys, slot.input.subarray(0, inputLength), this.#whole, request);
      this.#receive({ seq, damaged });
    } else this.#workers[seq % this.#workers.length]!.postMessage(request);
    return promise;
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
