// A fixed pool of worker threads that encode chunks, with a bound on work in flight so memory stays bounded
// and the copier feels backpressure through the promise returned by `submit`.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { EncodedChunk } from './chunk-codec.ts';
import type { RepositoryKeys } from './keys.ts';

interface Job {
  resolve(chunk: EncodedChunk): void;
  reject(error: Error): void;
}

export class ChunkPool {
  readonly #workers: Worker[] = [];
  readonly #jobs = new Map<number, Job>();
  readonly #idle: (() => void)[] = [];
  readonly #maxInFlight: number;
  #seq = 0;
  #next = 0;
  #failure: Error | null = null;

  constructor(keys: RepositoryKeys, threads = availableParallelism()) {
    const count = Math.max(1, threads);
    this.#maxInFlight = count * 4;
    for (let i = 0; i < count; i++) {
      const worker = new Worker(new URL('./chunk-worker.ts', import.meta.url), {
        workerData: { encrypted: keys.encrypted, dataKey: keys.dataKey, idKey: keys.idKey },
      });
      worker.on(
        'message',
        (message: { seq: number; id: Uint8Array; flags: number; rawLength: number; blob: Uint8Array }) => {
          const job = this.#jobs.get(message.seq);
          if (!job) return;
          this.#jobs.delete(message.seq);
          this.#idle.shift()?.();
          job.resolve({
            id: Buffer.from(message.id.buffer, message.id.byteOffset, message.id.byteLength),
            flags: message.flags,
            rawLength: message.rawLength,
            blob: Buffer.from(message.blob.buffer, message.blob.byteOffset, message.blob.byteLength),
          });
        },
      );
      worker.on('error', (error) => this.#fail(error));
      this.#workers.push(worker);
    }
  }

  #fail(error: Error): void {
    this.#failure = error;
    for (const job of this.#jobs.values()) job.reject(error);
    this.#jobs.clear();
    for (const wake of this.#idle.splice(0)) wake();
  }

  /**
   * Resolves once the data has been handed to a worker (copied; the caller may reuse its buffer), with a
   * promise of the encoded chunk. Waits while too much work is in flight.
   */
  async submit(data: Buffer): Promise<{ encoded: Promise<EncodedChunk> }> {
    while (this.#jobs.size >= this.#maxInFlight && !this.#failure) {
      await new Promise<void>((resolve) => this.#idle.push(resolve));
    }
    if (this.#failure) throw this.#failure;
    const seq = this.#seq++;
    const encoded = new Promise<EncodedChunk>((resolve, reject) => this.#jobs.set(seq, { resolve, reject }));
    const worker = this.#workers[this.#next++ % this.#workers.length]!;
    // A copy in its own ArrayBuffer, transferred: cloning a view would copy the whole buffer behind it (the
    // copier's read buffer is megabytes), and the caller may reuse its buffer as soon as this resolves.
    const copy = new Uint8Array(data.length);
    copy.set(data);
    worker.postMessage({ seq, data: copy }, [copy.buffer]);
    return { encoded };
  }

  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
