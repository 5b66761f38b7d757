// A container in a file: preallocated (fallocate) so that storing old data never needs new blocks from a
// full file system at the worst moment; it may start smaller and grow in steps up to its capacity. The file
// is created fresh (never an existing file) and deleted on close.
//
// If the file lives on the volume being backed up, pass its extents as the session's excludedRanges and
// preallocate it fully (initialBytes = capacity): blocks allocated by growing later are not excluded, so
// storing into them would itself need the container.

import { execFile } from 'node:child_process';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { SlotFileContainer } from './slot-file.ts';
import { ContainerError } from './types.ts';

const run = promisify(execFile);

export interface FileContainerOptions {
  path: string;
  /** Most bytes the file may grow to. */
  capacityBytes: number;
  /** Bytes preallocated at once; default: all of capacityBytes. */
  initialBytes?: number;
  /** Bytes added each time it grows; default 64 MiB (at most up to capacity). */
  growStepBytes?: number;
  slotSize: number;
}

/** Allocates [offset, offset + length) of the file: fallocate(1) where supported, else written zeros. */
async function preallocate(handle: FileHandle, path: string, offset: number, length: number): Promise<void> {
  if (length <= 0) return;
  try {
    await run('fallocate', ['--offset', String(offset), '--length', String(length), path]);
    return;
  } catch {
    // The file system may not support fallocate (or the tool may be missing): write zeros instead.
  }
  const zeros = Buffer.alloc(Math.min(length, 1 << 20));
  for (let done = 0; done < length; ) {
    const chunk = Math.min(zeros.length, length - done);
    // A full file system first answers with a short write, then with ENOSPC: keep writing until one of them.
    const { bytesWritten } = await handle.write(zeros, 0, chunk, offset + done);
    if (bytesWritten === 0) throw new Error(`no space left on the file system of ${path} (ENOSPC)`);
    done += bytesWritten;
  }
}

export class FileContainer extends SlotFileContainer {
  readonly kind = 'file' as const;
  readonly path: string;
  private allocatedBytes: number;
  private readonly growStepBytes: number;
  private growing: Promise<boolean> | null = null;

  private constructor(handle: FileHandle, options: FileContainerOptions, allocatedBytes: number) {
    super({
      handle,
      description: `container file ${options.path}`,
      capacityBytes: options.capacityBytes,
      slotSize: options.slotSize,
      slotsReady: Math.floor(allocatedBytes / options.slotSize),
    });
    this.path = options.path;
    this.allocatedBytes = allocatedBytes;
    this.growStepBytes = Math.max(options.slotSize, options.growStepBytes ?? 64 << 20);
  }

  static async create(options: FileContainerOptions): Promise<FileContainer> {
    const capacity = Math.floor(options.capacityBytes / options.slotSize) * options.slotSize;
    const initial = Math.min(capacity, options.initialBytes ?? capacity);
    const initialSlotBytes = Math.max(
      options.slotSize,
      Math.floor(initial / options.slotSize) * options.slotSize,
    );
    let handle: FileHandle;
    try {
      handle = await open(options.path, 'wx+');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new ContainerError(
        code === 'EEXIST'
          ? `container file ${options.path} already exists; another backup may be using it. Remove it or choose another path`
          : `could not create container file ${options.path}: ${(error as Error).message}`,
      );
    }
    try {
      await preallocate(handle, options.path, 0, initialSlotBytes);
      return new FileContainer(handle, options, initialSlotBytes);
    } catch (error) {
      await handle.close().catch(() => undefined);
      await rm(options.path, { force: true });
      throw new ContainerError(
        `could not preallocate ${initialSlotBytes} bytes for container file ${options.path}: ${(error as Error).message}; ` +
          'free space there or choose a smaller container',
      );
    }
  }

  get fileBytes(): number {
    return this.allocatedBytes;
  }

  protected override addSlots(): Promise<boolean> {
    this.growing ??= this.grow().finally(() => {
      this.growing = null;
    });
    return this.growing;
  }

  private async grow(): Promise<boolean> {
    const target = Math.min(this.capacity, this.allocatedBytes + this.growStepBytes);
    if (target <= this.allocatedBytes) return false;
    try {
      await preallocate(this.handle, this.path, this.allocatedBytes, target - this.allocatedBytes);
    } catch (error) {
      throw new ContainerError(
        `could not grow container file ${this.path} to ${target} bytes: ${(error as Error).message}; ` +
          'free space there or choose a smaller container',
      );
    }
    this.allocatedBytes = target;
    this.slots.grow(Math.floor(target / this.slotSize));
    return true;
  }

  protected override async released(): Promise<void> {
    await rm(this.path, { force: true });
  }
}
