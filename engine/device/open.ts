// Opens disks for Diskline: `openReader` for sources (image files and block devices, read-only, O_DIRECT
// with aligned buffers when the native helper is built and the device takes it) and `openWriter` for
// restore targets (an image file created or extended, or a block device that nothing uses).
import { constants } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { heldNameOf } from '../handles/held-path.ts';
import { alignmentGap, allocAligned, nativeHelperAvailable } from '../native/index.ts';
import { deviceUses, loopDevicesBacking } from './busy.ts';
import { DeviceRefusedError } from './errors.ts';
import { kernelName, sysfsLogicalSectorSize, sysfsSize } from './sysfs.ts';
import type { BlockReader, BlockWriter } from './types.ts';
import { writeFully } from './write-fully.ts';

/** Largest single read handed to the kernel; bigger requests are split (keeps aligned buffers bounded). */
const maxReadChunk = 8 * 1024 * 1024;

async function preadFully(handle: FileHandle, into: Buffer, position: number): Promise<number> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await handle.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

interface DeviceFacts {
  isBlockDevice: boolean;
  size: number;
  logicalSectorSize: number;
}

async function deviceFacts(path: string, handle: FileHandle): Promise<DeviceFacts> {
  const info = await handle.stat();
  if (info.isFile()) return { isBlockDevice: false, size: info.size, logicalSectorSize: 512 };
  if (!info.isBlockDevice()) {
    throw new Error(
      `${path} is neither a disk image file nor a block device; give a disk, a partition or an image`,
    );
  }
  const name = await kernelName(path);
  const size = await sysfsSize(name);
  if (size === null) throw new Error(`cannot read the size of ${path} from /sys/class/block/${name}/size`);
  return { isBlockDevice: true, size, logicalSectorSize: await sysfsLogicalSectorSize(name) };
}

/** A reader over an open handle; `direct` reads go through aligned buffers. */
class HandleReader implements BlockReader {
  readonly path: string;
  readonly size: number;
  readonly logicalSectorSize: number;
  protected handle: FileHandle;
  private direct: boolean;
  private bufferedFallback: (() => Promise<FileHandle>) | null;
  /** Memory handed out by allocateReadBuffer: aligned, so readInto reads into it directly. */
  private readonly alignedBuffers = new WeakSet<ArrayBufferLike>();

  constructor(
    path: string,
    handle: FileHandle,
    facts: DeviceFacts,
    direct: boolean,
    reopen: () => Promise<FileHandle>,
  ) {
    // Messages name a held source by the name it was held by, not by its descriptor's link.
    this.path = heldNameOf(path) ?? path;
    this.handle = handle;
    this.size = facts.size;
    this.logicalSectorSize = facts.logicalSectorSize;
    this.direct = direct;
    this.bufferedFallback = direct ? reopen : null;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`bad read of ${length} bytes at ${offset} on ${this.path}`);
    }
    const end = Math.min(offset + length, this.size);
    if (end <= offset) return Buffer.alloc(0);
    const sector = this.logicalSectorSize;
    if (this.direct && offset % sector === 0 && end % sector === 0 && end - offset <= maxReadChunk) {
      // The copier's usual request: aligned, so the aligned buffer itself is the result (no second copy).
      const aligned = Buffer.from(allocAligned(end - offset, Math.max(sector, 4096)));
      try {
        const got = await preadFully(this.handle, aligned, offset);
        if (got < aligned.length) {
          throw new Error(
            `${this.path} ended at byte ${offset + got}, before its size ${this.size}; was it shrunk?`,
          );
        }
        return aligned;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
        // Fall through: readChunk switches to buffered reads.
      }
    }
    const result = Buffer.allocUnsafe(end - offset);
    for (let at = offset; at < end; at += maxReadChunk) {
      const chunkEnd = Math.min(at + maxReadChunk, end);
      await this.readChunk(at, result.subarray(at - offset, chunkEnd - offset));
    }
    return result;
  }

  allocateReadBuffer(size: number): Buffer {
    if (!this.direct) return Buffer.allocUnsafeSlow(size);
    const aligned = Buffer.from(allocAligned(size, Math.max(this.logicalSectorSize, 4096)));
    this.alignedBuffers.add(aligned.buffer);
    return aligned;
  }

  async readInto(target: Buffer, offset: number): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError(`bad read of ${target.length} bytes at ${offset} on ${this.path}`);
    }
    const end = Math.min(offset + target.length, this.size);
    if (end <= offset) return 0;
    const into = target.subarray(0, end - offset);
    const sector = this.logicalSectorSize;
    const ownAligned = this.alignedBuffers.has(target.buffer) && target.byteOffset === 0;
    if (this.direct && ownAligned && offset % sector === 0 && into.length % sector === 0) {
      // One of our aligned buffers, at an aligned offset: the device reads straight into it.
      try {
        const got = await preadFully(this.handle, into, offset);
        if (got < into.length) {
          throw new Error(
            `${this.path} ended at byte ${offset + got}, before its size ${this.size}; was it shrunk?`,
          );
        }
        return into.length;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
        // Fall through: readChunk switches to buffered reads.
      }
    }
    for (let at = offset; at < end; at += maxReadChunk) {
      const chunkEnd = Math.min(at + maxReadChunk, end);
      await this.readChunk(at, into.subarray(at - offset, chunkEnd - offset));
    }
    return into.length;
  }

  private async readChunk(offset: number, into: Buffer): Promise<void> {
    if (this.direct) {
      try {
        return await this.readDirect(offset, into);
      } catch (error) {
        // Some devices (and file systems under loop devices) refuse O_DIRECT with EINVAL: read buffered from then on.
        if ((error as NodeJS.ErrnoException).code !== 'EINVAL' || !this.bufferedFallback) throw error;
        const buffered = await this.bufferedFallback();
        await this.handle.close();
        this.handle = buffered;
        this.direct = false;
      }
    }
    const got = await preadFully(this.handle, into, offset);
    if (got < into.length) {
      throw new Error(
        `${this.path} ended at byte ${offset + got}, before its size ${this.size}; was it shrunk?`,
      );
    }
  }

  private async readDirect(offset: number, into: Buffer): Promise<void> {
    const sector = this.logicalSectorSize;
    const alignedStart = Math.floor(offset / sector) * sector;
    const alignedEnd = Math.ceil((offset + into.length) / sector) * sector;
    const aligned = Buffer.from(allocAligned(alignedEnd - alignedStart, Math.max(sector, 4096)));
    const got = await preadFully(this.handle, aligned, alignedStart);
    const want = offset + into.length - alignedStart;
    if (got < want) {
      throw new Error(`${this.path} ended at byte ${alignedStart + got}, before its size ${this.size}`);
    }
    aligned.copy(into, 0, offset - alignedStart, want);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * Opens an image file or a block device for reading. Never opens for writing. Block devices are read with
 * O_DIRECT (no page-cache pollution, no stale cache) when the native helper provides aligned buffers.
 */
export async function openReader(path: string): Promise<BlockReader> {
  const buffered = () => open(path, constants.O_RDONLY);
  const probe = await buffered().catch((error: NodeJS.ErrnoException) => {
    const hint =
      error.code === 'EACCES' || error.code === 'EPERM'
        ? ' (reading a disk needs root: run the engine elevated)'
        : '';
    throw new Error(`cannot open ${path} for reading: ${error.code ?? error.message}${hint}`);
  });
  let facts: DeviceFacts;
  try {
    facts = await deviceFacts(path, probe);
  } catch (error) {
    await probe.close();
    throw error;
  }
  if (facts.isBlockDevice && nativeHelperAvailable()) {
    try {
      const direct = await open(path, constants.O_RDONLY | constants.O_DIRECT);
      await probe.close();
      return new HandleReader(path, direct, facts, true, buffered);
    } catch {
      // No O_DIRECT here: keep the buffered handle.
    }
  }
  return new HandleReader(path, probe, facts, false, buffered);
}

/** Writes that start on this boundary, from memory aligned to it, may go around the page cache. */
const DIRECT_WRITE_ALIGN = 4096;

class HandleWriter extends HandleReader implements BlockWriter {
  /**
   * The same target opened with O_DIRECT (null where refused): aligned writes from aligned memory go through it,
   * as writeback through the page cache ran at about half a disk's speed. The rest goes through `handle`.
   */
  #direct: FileHandle | null;

  constructor(path: string, handle: FileHandle, facts: DeviceFacts, direct: FileHandle | null) {
    super(path, handle, facts, false, () => Promise.resolve(handle));
    this.#direct = direct;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    if (offset < 0 || offset + data.length > this.size) {
      throw new RangeError(
        `write of ${data.length} bytes at ${offset} is outside ${this.path} (${this.size} bytes)`,
      );
    }
    let done = 0;
    const whole = data.length - (data.length % DIRECT_WRITE_ALIGN);
    if (this.#direct && whole > 0 && offset % DIRECT_WRITE_ALIGN === 0 && alignmentGap(data) === 0) {
      try {
        done = await writeFully(this.#direct, data.subarray(0, whole), offset);
        // A short direct write leaves an unaligned rest: it goes through the cache like the tail.
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
        // Refused (nothing was written): write through the cache from now on.
        const direct = this.#direct;
        this.#direct = null;
        await direct.close();
      }
    }
    if (done < data.length) {
      const rest = data.subarray(done);
      if ((await writeFully(this.handle, rest, offset + done)) < rest.length) {
        throw new Error(`${this.path}: a write at ${offset + done} stopped short`);
      }
    }
  }

  async flush(): Promise<void> {
    // Flushes the file's cached pages and the device's write cache, which direct writes may sit in.
    await this.handle.datasync();
  }

  override async close(): Promise<void> {
    await this.#direct?.close();
    this.#direct = null;
    await super.close();
  }
}

/** The target opened again with O_DIRECT for aligned writes, or null where the file system refuses it. */
async function openDirect(path: string): Promise<FileHandle | null> {
  if (!nativeHelperAvailable()) return null;
  try {
    return await open(path, constants.O_RDWR | constants.O_DIRECT);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EINVAL') return null;
    throw error;
  }
}

export interface WriterOptions {
  /** The target must hold at least this many bytes; an image file is extended (sparsely) to it. */
  minSize: number;
}

/**
 * Opens a restore target for writing: an image file (created, or extended to `minSize`) or a block device of at
 * least `minSize` bytes that is not mounted, not swap and not held by another device. Refusals throw
 * DeviceRefusedError (exit code 3) saying why.
 */
export async function openWriter(path: string, options: WriterOptions): Promise<BlockWriter> {
  const existing = await stat(path).catch(() => null);
  if (existing?.isBlockDevice()) {
    const uses = await deviceUses(path);
    if (uses.length) {
      throw new DeviceRefusedError(
        path,
        `refusing to write to ${path}: it is in use (${uses.join('; ')}). Unmount it (and its partitions) first.`,
      );
    }
    // O_EXCL on a block device makes the kernel refuse it while anything has it claimed (mounted, in a RAID).
    const handle = await open(path, constants.O_RDWR | constants.O_EXCL).catch(
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'EBUSY') {
          throw new DeviceRefusedError(
            path,
            `refusing to write to ${path}: the kernel reports it busy (EBUSY).`,
          );
        }
        throw new Error(`cannot open ${path} for writing: ${error.code ?? error.message}`);
      },
    );
    const facts = await deviceFacts(path, handle);
    if (facts.size < options.minSize) {
      await handle.close();
      throw new DeviceRefusedError(
        path,
        `refusing to restore to ${path}: it holds ${facts.size} bytes but the restore point needs ${options.minSize}. ` +
          'Choose a device at least as large as the source.',
      );
    }
    // The direct handle opens without O_EXCL: this process already holds the device's exclusive claim.
    return new HandleWriter(path, handle, facts, await openDirect(path));
  }
  if (existing && !existing.isFile()) {
    throw new DeviceRefusedError(
      path,
      `refusing to write to ${path}: it is neither an image file nor a block device.`,
    );
  }
  if (existing) {
    // An image attached as a loop device may carry a mounted file system: writing under it corrupts it.
    for (const loop of await loopDevicesBacking(path)) {
      const uses = await deviceUses(loop);
      if (uses.length) {
        throw new DeviceRefusedError(
          path,
          `refusing to write to ${path}: it backs ${loop}, which is in use (${uses.join('; ')}). Unmount it first.`,
        );
      }
    }
  }
  const handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    if ((await handle.stat()).size < options.minSize) await handle.truncate(options.minSize);
    const facts = await deviceFacts(path, handle);
    return new HandleWriter(path, handle, facts, await openDirect(path));
  } catch (error) {
    await handle.close();
    throw error;
  }
}
