// Read-only serving of a restore point: a FUSE file whose reads are answered by JavaScript (the repository's
// PointReader decodes chunks), attached read-only as a loop device with partition scanning, and its file
// systems mounted read-only. Used by `diskline mount`. The hosting process must keep its event loop free.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { nativeHelper, type TapHandle } from '../native/index.ts';
import { TapRefusedError } from './attach.ts';
import {
  attachLoopDevice,
  detachLoopDevice,
  loopPartitions,
  mountPointsOf,
  tapUnavailableReason,
} from './system-state.ts';

const run = promisify(execFile);
const EIO = 5;

/** Anything that reads bytes of a disk at an offset (a repository PointReader is one). */
export interface ByteSource {
  read(offset: number, length: number): Promise<Buffer>;
}

export interface ServedPoint {
  loopDevice: string;
  fuseFile: string;
  /** Partition devices found on the loop device (empty: the whole device holds one file system or none). */
  partitions: string[];
  /** Unmounts nothing; detaches the loop device and stops serving. */
  stop(): Promise<void>;
}

/** Serves `source` (`size` bytes) read-only as a loop device. */
export async function servePointReadOnly(
  source: ByteSource,
  size: number,
  label: string,
): Promise<ServedPoint> {
  const unavailable = tapUnavailableReason();
  if (unavailable) throw new TapRefusedError(`cannot serve ${label}: ${unavailable}`);
  const native = nativeHelper();
  const mountDir = await mkdtemp(join(tmpdir(), 'diskline-point-'));
  let tap: TapHandle | null = null;
  try {
    const handle: TapHandle = native.tapStart({
      mountDir,
      fileName: 'volume',
      size,
      backingFd: -1,
      readOnly: true,
      trackUnitSize: 1 << 20,
      onAccess: (_kind, _offset, _length, token) => native.tapComplete(handle, token, 0),
      onRead: (offset, length, token) => {
        Promise.resolve()
          .then(() => source.read(offset, length))
          .then(
            (data) => native.tapCompleteRead(handle, token, data, 0),
            (error: unknown) => {
              process.emitWarning(`reading ${label} at byte ${offset} failed: ${(error as Error).message}`);
              native.tapCompleteRead(handle, token, null, EIO);
            },
          );
      },
    });
    tap = handle;
    const fuseFile = join(mountDir, 'volume');
    const loop = await attachLoopDevice(fuseFile, { directIo: true, readOnly: true, partscan: true });
    const partitions = await loopPartitions(loop.device);
    let stopped = false;
    return {
      loopDevice: loop.device,
      fuseFile,
      partitions,
      async stop() {
        if (stopped) return;
        await detachLoopDevice(loop.device);
        native.tapStop(handle);
        stopped = true;
        await rmdir(mountDir).catch(() => undefined);
      },
    };
  } catch (error) {
    if (tap) native.tapStop(tap);
    await rmdir(mountDir).catch(() => undefined);
    throw error;
  }
}

/** The file system type blkid finds on `device`, or null. */
async function fileSystemType(device: string): Promise<string | null> {
  try {
    const { stdout } = await run('blkid', ['-o', 'value', '-s', 'TYPE', device]);
    return stdout.trim() || null;
  } catch {
    return null;
  }
}

/** Mounts `device` read-only at `dir`, without replaying a journal (the device is read-only). */
async function mountReadOnly(device: string, dir: string, type: string): Promise<void> {
  // Journals are not replayed on a read-only device: ext3/4 'noload', xfs 'norecovery' (and 'nouuid' because
  // the original is probably mounted with the same UUID).
  const options =
    type === 'xfs' ? 'ro,norecovery,nouuid' : type === 'ext3' || type === 'ext4' ? 'ro,noload' : 'ro';
  await run('mount', ['-t', type === 'ntfs' ? 'ntfs-3g' : type, '-o', options, device, dir]);
}

export interface MountedPoint {
  served: ServedPoint;
  /** Each mounted file system: device and directory. */
  mounts: Array<{ device: string; dir: string; type: string }>;
  /** Unmounts everything and stops serving. */
  unmount(): Promise<void>;
  /** Resolves when every mount is gone (someone ran umount). */
  whenUnmounted(): Promise<void>;
}

/**
 * Serves the point and mounts its file systems read-only under `dir`: the whole device at `dir`, or each
 * partition at `dir/partN` (partitions without a known file system are skipped).
 */
export async function mountPointReadOnly(
  source: ByteSource,
  size: number,
  label: string,
  dir: string,
): Promise<MountedPoint> {
  const served = await servePointReadOnly(source, size, label);
  const mounts: MountedPoint['mounts'] = [];
  try {
    const targets = served.partitions.length
      ? served.partitions.map((device, index) => ({ device, dir: join(dir, `part${index + 1}`) }))
      : [{ device: served.loopDevice, dir }];
    for (const target of targets) {
      const type = await fileSystemType(target.device);
      if (!type || type === 'swap') continue;
      await mkdir(target.dir, { recursive: true });
      await mountReadOnly(target.device, target.dir, type);
      mounts.push({ ...target, type });
    }
    if (!mounts.length) throw new Error(`no file system found on ${label} to mount`);
  } catch (error) {
    for (const mount of mounts.reverse()) await run('umount', [mount.dir]).catch(() => undefined);
    await served.stop();
    throw error;
  }
  const unmount = async () => {
    for (const mount of [...mounts].reverse()) {
      const still = await mountPointsOf(mount.device).catch(() => [] as string[]);
      if (still.length) await run('umount', [mount.dir]);
    }
    await served.stop();
  };
  return {
    served,
    mounts,
    unmount,
    async whenUnmounted() {
      for (;;) {
        const remaining = await Promise.all(
          mounts.map((m) => mountPointsOf(m.device).catch(() => [] as string[])),
        );
        if (remaining.every((points) => points.length === 0)) return;
        await sleep(500);
      }
    },
  };
}
