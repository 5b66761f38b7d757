// A disk held in memory: a BlockReader and BlockWriter over a Buffer. Tests drive the snapshot core with it
// (racing writers against the copier), and the throughput benchmark uses it to measure the core alone.
// Reads and writes yield to the event loop like real I/O, so concurrent requests interleave.

import type { BlockWriter } from '../../device/types.ts';

export interface MemoryDiskOptions {
  /** Fails a read when it returns an error (to test how read errors end a session). */
  readFault?: (offset: number, length: number) => Error | null;
  /** Yield to the event loop on each request (default true). */
  yieldOnIo?: boolean;
}

export class MemoryDisk implements BlockWriter {
  readonly path: string;
  readonly size: number;
  readonly logicalSectorSize = 512;
  readonly bytes: Buffer;
  private readonly options: MemoryDiskOptions;

  constructor(path: string, bytes: Buffer, options: MemoryDiskOptions = {}) {
    this.path = path;
    this.bytes = bytes;
    this.size = bytes.length;
    this.options = options;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (this.options.yieldOnIo !== false) await new Promise<void>((resolve) => setImmediate(resolve));
    const fault = this.options.readFault?.(offset, length);
    if (fault) throw fault;
    const end = Math.min(this.size, offset + length);
    return Buffer.from(this.bytes.subarray(offset, Math.max(offset, end)));
  }

  async readInto(target: Buffer, offset: number): Promise<number> {
    const data = await this.read(offset, target.length);
    data.copy(target);
    return data.length;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (this.options.yieldOnIo !== false) await new Promise<void>((resolve) => setImmediate(resolve));
    if (offset + data.length > this.size) throw new Error(`write past the end of ${this.path}`);
    data.copy(this.bytes, offset);
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
