// A container on a spare partition or disk. Checked before use (not the disk being backed up or one of its
// partitions, not on the repository's disk, big enough) and opened exclusively (O_EXCL on a block device fails
// while it is mounted or held by anyone else), so a mounted file system is never overwritten; its old contents
// are lost.

import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { type FileHandle, open, realpath, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import { RefusalError } from '../../protocol/failure.ts';
import { kernelName, parentDisk } from '../device/sysfs.ts';
import { SlotFileContainer } from './slot-file.ts';
import { ContainerError } from './types.ts';

const run = promisify(execFile);

export interface DeviceContainerOptions {
  path: string;
  /** Bytes to use at most; default: the whole device. */
  capacityBytes?: number;
  slotSize: number;
  /** Paths the container must not be (the source being backed up and its partitions). */
  forbiddenPaths?: string[];
  /** A directory on the disk the repository is written to: the container may not share that disk. */
  repositoryPath?: string;
  /** Fewest bytes the container must hold to be of use. */
  minimumBytes?: number;
}

/** The whole disk (kernel name) under the file system holding `path`, or null when it is not a block device. */
async function diskHolding(path: string): Promise<string | null> {
  const info = await stat(path).catch(() => null);
  if (!info) return null;
  const major = Math.floor(info.dev / 256) & 0xfff;
  const minor = (info.dev & 0xff) | ((info.dev >> 12) & 0xfff00);
  const device = await realpath(`/sys/dev/block/${major}:${minor}`).catch(() => null);
  return device ? parentDisk(basename(device)) : null;
}

async function deviceSize(handle: FileHandle, path: string): Promise<number> {
  const stat = await handle.stat();
  if (stat.isFile()) return stat.size;
  if (!stat.isBlockDevice()) throw new ContainerError(`${path} is neither a block device nor a file`);
  const { stdout } = await run('blockdev', ['--getsize64', path]);
  return Number(stdout.trim());
}

/** True when `path` is `disk` or one of its partitions (/dev/sda → /dev/sda2, /dev/loop1 → /dev/loop1p2). */
export function sameDiskOrPartition(path: string, disk: string): boolean {
  if (path === disk) return true;
  if (!path.startsWith(disk)) return false;
  const rest = path.slice(disk.length);
  return /[0-9]$/.test(disk) ? /^p[0-9]+$/.test(rest) : /^[0-9]+$/.test(rest);
}

export class DeviceContainer extends SlotFileContainer {
  readonly kind = 'device' as const;
  readonly path: string;

  private constructor(handle: FileHandle, path: string, capacityBytes: number, slotSize: number) {
    super({
      handle,
      description: `container device ${path}`,
      capacityBytes,
      slotSize,
      slotsReady: Math.floor(capacityBytes / slotSize),
    });
    this.path = path;
  }

  static async open(options: DeviceContainerOptions): Promise<DeviceContainer> {
    const resolved = await realpath(options.path).catch(() => options.path);
    for (const forbidden of options.forbiddenPaths ?? []) {
      const other = await realpath(forbidden).catch(() => forbidden);
      if (sameDiskOrPartition(resolved, other) || sameDiskOrPartition(other, resolved)) {
        throw new RefusalError(
          `refusing to use ${options.path} as the container: it is (part of) ${forbidden}, the disk being backed up`,
        );
      }
    }
    if (options.repositoryPath) {
      const repositoryDisk = await diskHolding(options.repositoryPath);
      const containerDisk = await parentDisk(await kernelName(resolved)).catch(() => null);
      if (repositoryDisk && repositoryDisk === containerDisk) {
        throw new RefusalError(
          `refusing to use ${options.path} as the container: it is on /dev/${repositoryDisk}, the disk the repository ${options.repositoryPath} is written to (the two would compete for it); choose a partition on another disk`,
        );
      }
    }
    let handle: FileHandle;
    try {
      handle = await open(options.path, constants.O_RDWR | constants.O_EXCL);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EBUSY') {
        throw new RefusalError(
          `refusing to use ${options.path} as the container: it is mounted or in use; unmount it or choose another device`,
        );
      }
      throw new ContainerError(
        `could not open container device ${options.path}: ${(error as Error).message}`,
      );
    }
    try {
      const size = await deviceSize(handle, options.path);
      const capacity = Math.min(size, options.capacityBytes ?? size);
      if (options.minimumBytes !== undefined && capacity < options.minimumBytes) {
        throw new RefusalError(
          `refusing to use ${options.path} as the container: it holds ${size} bytes, and a container needs at least ${options.minimumBytes}; choose a bigger partition`,
        );
      }
      return new DeviceContainer(handle, options.path, capacity, options.slotSize);
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
  }
}
