// For tests: a UnitSink that writes the snapshot to a raw image file, each unit at its offset (units not captured stay
// holes: zeros). The image is written as NAME.partial and renamed to NAME only after everything is durable,
// so an aborted or crashed backup never leaves a file that looks complete.

import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import type { ReadableUnitSink } from '../types.ts';

export class ImageSink implements ReadableUnitSink {
  readonly path: string;
  readonly partialPath: string;
  private readonly size: number;
  private handle: FileHandle | null;

  private constructor(path: string, size: number, handle: FileHandle) {
    this.path = path;
    this.partialPath = `${path}.partial`;
    this.size = size;
    this.handle = handle;
  }

  /** Creates NAME.partial (refusing if NAME or NAME.partial exists: an image is never overwritten). */
  static async create(path: string, size: number): Promise<ImageSink> {
    const exists = await open(path, 'r').then(
      (handle) => handle.close().then(() => true),
      () => false,
    );
    if (exists) throw new Error(`${path} already exists; choose another name or remove it first`);
    let handle: FileHandle;
    try {
      handle = await open(`${path}.partial`, 'wx+');
    } catch (error) {
      throw new Error(
        (error as NodeJS.ErrnoException).code === 'EEXIST'
          ? `${path}.partial exists: another backup may be writing it; remove it if not`
          : `could not create ${path}.partial: ${(error as Error).message}`,
      );
    }
    await handle.truncate(size);
    return new ImageSink(path, size, handle);
  }

  private open(): FileHandle {
    if (!this.handle) throw new Error(`the image ${this.path} is closed`);
    return this.handle;
  }

  async writeUnit(offset: number, data: Buffer): Promise<void> {
    if (offset + data.length > this.size) {
      throw new Error(
        `unit at ${offset} (${data.length} bytes) lies past the end of the ${this.size}-byte image`,
      );
    }
    const { bytesWritten } = await this.open().write(data, 0, data.length, offset);
    if (bytesWritten !== data.length) throw new Error(`short write to ${this.partialPath} at ${offset}`);
  }

  /** Reads back what was written (from the finished image once it is complete). */
  async readUnit(offset: number, length: number): Promise<Buffer> {
    const data = Buffer.alloc(length);
    if (this.handle) {
      await this.handle.read(data, 0, length, offset);
      return data;
    }
    const finished = await open(this.path, 'r');
    try {
      await finished.read(data, 0, length, offset);
    } finally {
      await finished.close();
    }
    return data;
  }

  async finish(): Promise<void> {
    const handle = this.open();
    await handle.sync();
    await handle.close();
    this.handle = null;
    await rename(this.partialPath, this.path);
  }

  async abort(_reason: Error): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => undefined);
    await rm(this.partialPath, { force: true });
  }
}
