// What every part of the engine agrees a disk is: a byte range read (and, for restore targets and
// containers, written) at offsets. Image files and block devices both satisfy these.

/** A half-open byte range [start, start + length) on a device. */
export interface ByteRange {
  start: number;
  length: number;
}

/** A readable source: an image file or a block device. A source is never opened for writing. */
export interface BlockReader {
  readonly path: string;
  /** Size in bytes. */
  readonly size: number;
  /** The smallest unit the device reads directly (512 or 4096); offsets aligned to it are fastest. */
  readonly logicalSectorSize: number;
  /** Reads `length` bytes at `offset`; the result is shorter only at the end of the device. */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Optional: reads `target.length` bytes at `offset` into `target`, resolving with the count (shorter only at
   * the end of the device). Lets a caller that reads a lot (the snapshot copier) reuse its buffers instead of
   * paying for fresh memory on every read.
   */
  readInto?(target: Buffer, offset: number): Promise<number>;
  /**
   * Optional: a buffer this reader fills fastest with readInto (aligned for O_DIRECT where the reader uses it).
   * Callers that reuse read buffers take them from here.
   */
  allocateReadBuffer?(size: number): Buffer;
  close(): Promise<void>;
}

/** A writable target: a restore target, an intermediate-container partition. */
export interface BlockWriter extends BlockReader {
  write(offset: number, data: Buffer): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
}
