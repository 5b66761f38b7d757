// Read-only serving of a restore point: a FUSE file whose reads are answered by JavaScript (the repository's
// PointReader decodes chunks), attached read-only as a loop device with partition scanning, and its file
// systems mounted read-only, nosuid,nodev,noexec, on directories held open (engine/handles): a name swapped
// after the check never redirects a mount or an unmount. Used by `diskline mount` and the engine's mount.start.
// The hosting process must keep its event loop free.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { type HeldPath, holdChild } from '../handles/held-path.ts';
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

/**
 * Mounts `device` read-only on the held directory `dir`, without replaying a journal (the device is read-only).
 * A point is a view of old data, never a way in: setuid bits, device nodes and programs in it do nothing.
 */
async function mountReadOnly(device: string, dir: HeldPath, type: string): Promise<void> {
  // Journals are not replayed on a read-only device: ext3/4 'noload', xfs 'norecovery' (and 'nouuid' because
  // the original is probably mounted with the same UUID).
  const journal = type === 'xfs' ? ',norecovery,nouuid' : type === 'ext3' || type === 'ext4' ? ',noload' : '';
  const options = `ro,nosuid,nodev,noexec${journal}`;
  // --no-canonicalize: mount on the held directory itself (its /proc fd link), never on a name looked up again.
  await run('mount', [
    '--no-canonicalize',
    '-t',
    type === 'ntfs' ? 'ntfs-3g' : type,
    '-o',
    options,
    device,
    dir.procPath,
  ]);
}

/** Unmounts what is mounted on the held directory `dir` (the held link reaches the mount on top of it). */
async function unmountHeld(dir: HeldPath): Promise<void> {
  await run('umount', ['--no-canonicalize', dir.procPath]);
}

export interface MountedPoint {
  served: ServedPoint;
  /** Each mounted file system: device and directory (its name, and the directory held open). */
  mounts: Array<{ device: string; dir: string; held: HeldPath; type: string }>;
  /** Unmounts everything and stops serving. */
  unmount(): Promise<void>;
  /** Resolves when every mount is gone (someone ran umount). */
  whenUnmounted(): Promise<void>;
}

/** The directory `part` inside the held `dir`, made if missing; a link or file in its place is refused. */
async function holdPartitionDir(dir: HeldPath, part: string): Promise<HeldPath> {
  await mkdir(`${dir.procPath}/${part}`).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
  const held = holdChild(dir, part);
  if (!held.stats.isDirectory()) {
    held.close();
    throw new Error(`${held.name} is not a directory; remove it and mount again.`);
  }
  return held;
}

/**
 * Serves the point and mounts its file systems read-only under the held directory `dir`: the whole device at
 * `dir`, or each partition at `dir/partN` (partitions without a known file system are skipped). The caller
 * keeps `dir` open until unmount() has finished.
 */
export async function mountPointReadOnly(
  source: ByteSource,
  size: number,
  label: string,
  dir: HeldPath,
): Promise<MountedPoint> {
  const served = await servePointReadOnly(source, size, label);
  const mounts: MountedPoint['mounts'] = [];
  const partDirs: HeldPath[] = [];
  const release = () => {
    for (const held of partDirs) held.close();
  };
  try {
    for (const [index, device] of (served.partitions.length
      ? served.partitions
      : [served.loopDevice]
    ).entries()) {
      const type = await fileSystemType(device);
      if (!type || type === 'swap') continue;
      let held = dir;
      if (served.partitions.length) {
        held = await holdPartitionDir(dir, `part${index + 1}`);
        partDirs.push(held);
      }
      await mountReadOnly(device, held, type);
      mounts.push({ device, dir: held.name, held, type });
    }
    if (!mounts.length) throw new Error(`no file system found on ${label} to mount`);
  } catch (error) {
    for (const mount of mounts.reverse()) await unmountHeld(mount.held).catch(() => undefined);
    release();
    await served.stop();
    throw error;
  }
  const unmount = async () => {
    for (const mount of [...mounts].reverse()) {
      const still = await mountPointsOf(mount.device).catch(() => [] as string[]);
      if (still.length) await unmountHeld(mount.held);
    }
    release();
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
