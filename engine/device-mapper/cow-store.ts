// The copy-on-write store of a device-mapper snapshot: the block device dm-snapshot keeps the point's old
// chunks in. It is one of the three container kinds: memory (a file in tmpfs under a loop device: RAM that can
// be swapped out), a preallocated file under a loop device, or a spare partition. A store on the protected
// volume itself cannot work under device-mapper (the store's writes would go through the snapshot-origin they
// serve), so it is refused, as is a device that is, or lies beneath, the protected one.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open, realpath, rm, stat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { promisify } from 'node:util';
import type { ContainerSpec } from '../../protocol/model.ts';
import { DeviceMapperError } from './dmsetup.ts';
import type { Watchdog } from './watchdog.ts';

const run = promisify(execFile);

/** A store's size when the request names none: 256 MiB of old chunks. */
export const DEFAULT_STORE_BYTES = 256 << 20;

/** Where a memory store's file lives: tmpfs on every Linux with systemd, and never the protected disk. */
const MEMORY_STORE_DIR = process.env.DISKLINE_MEMORY_STORE_DIR ?? '/dev/shm';

export interface CowStore {
  /** The block device dm-snapshot writes old chunks to. */
  readonly device: string;
  readonly capacityBytes: number;
  readonly description: string;
  /** Detaches what was made for the store (loop device, memory file); a partition is left as it was. */
  release(): Promise<void>;
}

/** The "major:minor" a path's file system lives on, and the block device's own number for a device node. */
export function deviceNumberOf(dev: number): string {
  // Linux's dev_t: minor in bits 0-7 and 20-39, major in bits 8-19 and 40-51 (>> would cut at 32 bits).
  const major = (Math.floor(dev / 256) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | (Math.floor(dev / 4096) & ~0xff);
  return `${major}:${minor}`;
}

export async function openCowStore(
  spec: ContainerSpec,
  options: { protectedDeviceNumbers: readonly string[]; watchdog: Watchdog },
): Promise<CowStore> {
  const forbidden = new Set(options.protectedDeviceNumbers);
  const requestedBytes = spec.capacityBytes ?? DEFAULT_STORE_BYTES;
  if (spec.kind === 'device') {
    if (!spec.path) throw new DeviceMapperError('a device store needs the path of a spare partition');
    const info = await stat(spec.path);
    if (!info.isBlockDevice()) throw new DeviceMapperError(`${spec.path} is not a block device`);
    if (forbidden.has(deviceNumberOf(info.rdev)))
      throw new DeviceMapperError(
        `${spec.path} is the protected volume or lies beneath it: the copy-on-write store must be another device`,
      );
    const size = Number((await run('blockdev', ['--getsize64', spec.path])).stdout.trim());
    const capacityBytes = Math.min(size, spec.capacityBytes ?? size);
    return {
      device: spec.path,
      capacityBytes,
      description: `device ${spec.path}`,
      release: async () => {},
    };
  }
  let path: string;
  if (spec.kind === 'memory') {
    path = `${MEMORY_STORE_DIR}/diskline-store-${randomBytes(6).toString('hex')}`;
  } else {
    if (!spec.path) throw new DeviceMapperError('a file store needs a path (e.g. /var/tmp/diskline.store)');
    path = spec.path;
  }
  const folder = await realpath(dirname(path));
  const folderDevice = deviceNumberOf((await stat(folder)).dev);
  if (forbidden.has(folderDevice))
    throw new DeviceMapperError(
      `${path} is on the protected volume: under device-mapper its blocks cannot be excluded (its writes would ` +
        'pass the snapshot they serve); put the store on another volume, in memory, or on a spare partition',
    );
  const fullPath = `${folder}/${basename(path)}`;
  // O_EXCL: an existing file is never taken over (it may be someone's data).
  const handle = await open(fullPath, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR, 0o600);
  options.watchdog.guardFile(fullPath);
  try {
    // Preallocated: a store that runs out of room under the snapshot is exactly what must never happen.
    if (spec.kind === 'file') await run('fallocate', ['-l', String(requestedBytes), fullPath]);
    else await handle.truncate(requestedBytes);
  } finally {
    await handle.close();
  }
  let loop: string;
  try {
    loop = (await run('losetup', ['--find', '--show', fullPath])).stdout.trim();
  } catch (error) {
    await rm(fullPath, { force: true });
    throw new DeviceMapperError(`could not attach ${fullPath} as a loop device: ${(error as Error).message}`);
  }
  options.watchdog.guardLoop(loop);
  return {
    device: loop,
    capacityBytes: requestedBytes,
    description: spec.kind === 'memory' ? `memory (${loop})` : `file ${fullPath} (${loop})`,
    release: async () => {
      await run('losetup', ['-d', loop]).catch(() => undefined);
      await rm(fullPath, { force: true });
    },
  };
}
