// Attaches a protected volume: the source (device or image) is served as one file by our FUSE tap and that file
// is attached as a loop device with direct I/O; the user's file system lives on the loop device. Every write
// passes the tap, which records changed blocks and, while a snapshot session is armed, lets it preserve old
// data first (WriteInterceptor.beforeWrite). The process hosting an attached volume must keep its event loop
// free (never block it on I/O to the loop device): intercepted writes are answered there.
import { closeSync, constants, fstatSync, fsyncSync, openSync } from 'node:fs';
import { mkdtemp, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RefusalError } from '../../protocol/failure.ts';
import { deviceUses } from '../device/busy.ts';
import type { ByteRange } from '../device/types.ts';
import { blockDeviceSize, nativeHelper, type TapHandle, type TapStats } from '../native/index.ts';
import type { WriteInterceptor } from '../snapshot/types.ts';
import { type ChangedSince, ChangeTracking } from './change-tracking.ts';
import {
  attachLoopDevice,
  detachLoopDevice,
  loopDevicesBackedBy,
  loopPartitions,
  mountPointsOfVolume,
  tapUnavailableReason,
} from './system-state.ts';

export interface AttachOptions {
  /** Where change tracking is persisted (the daemon's state dir + "/tracking"); omitted: no persistence. */
  trackingDir?: string;
  /** Changed-block tracking granularity in bytes (default 64 KiB). */
  trackUnitSize?: number;
  /** Ask the loop device for direct I/O on the FUSE file (default true). */
  directIo?: boolean;
  /** Scan the loop device for partitions (default true). */
  partscan?: boolean;
}

/** What changed-block tracking knows right now, without starting a new generation. */
export interface TrackingStatus {
  valid: boolean;
  reason?: string;
  generation: string | null;
  ranges: ByteRange[];
}

export interface AttachedVolume {
  readonly source: string;
  readonly size: number;
  /** The loop device the user's file system lives on, e.g. /dev/loop4. */
  readonly loopDevice: string;
  /** The FUSE file backing the loop device. */
  readonly fuseFile: string;
  /** Partition devices of the loop device (e.g. /dev/loop4p1), empty without a partition table. */
  readonly partitions: string[];
  readonly directIo: boolean;
  /** Notes for the user (e.g. direct I/O refused). */
  readonly notes: string[];
  /**
   * Arms (or with null, disarms) write interception: from this instant, the first write touching each unit of
   * `unitSize` bytes waits for `interceptor.beforeWrite`. With `resetTracking`, the changes since the previous
   * generation are returned and a new generation starts — atomically with arming.
   */
  setInterceptor(
    interceptor: WriteInterceptor | null,
    unitSize: number,
    options?: { resetTracking?: boolean },
  ): Promise<ChangedSince | null>;
  /** Tells the tap that writes to these units no longer need the interceptor (copied or free). */
  settleUnits(firstUnit: number, count: number): void;
  /** Changed ranges since the current generation (tracking status included). */
  changedRanges(): TrackingStatus;
  /** Mount points of the loop device and of its partitions. */
  mountPoints(): Promise<string[]>;
  stats(): TapStats;
  /** Flushes, detaches the loop device, stops the tap, persists tracking. Refuses while the device is mounted. */
  detach(): Promise<void>;
}

/** Refused for safety: attaching or detaching now would put data in use at risk. */
export class TapRefusedError extends RefusalError {}

/**
 * Refuses to take a tap's loop device away while it or one of its partitions is mounted: stopping the tap under
 * a mounted file system loses its writes. `name` is what the user attached (a source, or an instant-restore target).
 */
export async function refuseDetachWhileMounted(name: string, loopDevice: string): Promise<void> {
  const mounted = await mountPointsOfVolume(loopDevice);
  if (mounted.length)
    throw new TapRefusedError(
      `cannot detach ${name}: ${loopDevice} is mounted on ${mounted.join(', ')}; unmount it first`,
    );
}

/** The interceptor failed: the write is let through (the user's data comes first) and the session is told. */
function onInterceptorFailure(error: unknown, source: string): void {
  process.emitWarning(
    `write interception for ${source} failed (${(error as Error).message}); the write went through and the running backup cannot be consistent`,
  );
}

export async function attachVolume(source: string, options: AttachOptions = {}): Promise<AttachedVolume> {
  const unavailable = tapUnavailableReason();
  if (unavailable) throw new TapRefusedError(`cannot attach ${source}: ${unavailable}`);
  const native = nativeHelper();
  const sourceInfo = await stat(source);
  if (sourceInfo.isBlockDevice()) {
    // The disk and each of its partitions: mounted, swap, or held by device-mapper/md.
    const uses = await deviceUses(source);
    if (uses.length)
      throw new TapRefusedError(
        `cannot attach ${source}: ${uses.join('; ')}; unmount it first, then mount the loop device the attach prints`,
      );
  } else if (!sourceInfo.isFile()) {
    throw new TapRefusedError(`cannot attach ${source}: not a block device or an image file`);
  } else {
    // An image attached elsewhere (a plain loop device, or another tap) is written around this tap.
    const loops = await loopDevicesBackedBy(source);
    if (loops.length)
      throw new TapRefusedError(
        `cannot attach ${source}: it is already attached as ${loops.join(', ')}; detach that first (losetup -d)`,
      );
  }
  const trackUnitSize = options.trackUnitSize ?? 65536;
  // O_EXCL on a block device: nobody else can mount it (or open it exclusively) while we serve it.
  const flags = constants.O_RDWR | (sourceInfo.isBlockDevice() ? constants.O_EXCL : 0);
  let fd: number;
  try {
    fd = openSync(source, flags);
  } catch (error) {
    throw new TapRefusedError(
      `cannot attach ${source}: opening it for writing failed (${(error as Error).message})`,
    );
  }
  const size = sourceInfo.isBlockDevice() ? blockDeviceSize(fd) : fstatSync(fd).size;
  if (size <= 0 || size % 512 !== 0) {
    closeSync(fd);
    throw new TapRefusedError(
      `cannot attach ${source}: its size (${size} bytes) is not a positive multiple of 512`,
    );
  }
  const mountDir = await mkdtemp(join(tmpdir(), 'diskline-tap-'));
  const fuseFile = join(mountDir, 'volume');
  let tracking: ChangeTracking | null = null;
  let tap: TapHandle | null = null;
  let interceptor: WriteInterceptor | null = null;
  try {
    if (options.trackingDir)
      tracking = await ChangeTracking.open(options.trackingDir, source, size, trackUnitSize);
    const handle: TapHandle = native.tapStart({
      mountDir,
      fileName: 'volume',
      size,
      backingFd: fd,
      readOnly: false,
      trackUnitSize,
      onAccess: (_kind, offset, length, token) => {
        const current = interceptor;
        if (!current) {
          native.tapComplete(handle, token, 0);
          return;
        }
        // Through a promise chain: an interceptor that throws synchronously must still complete the request.
        Promise.resolve()
          .then(() => current.beforeWrite(offset, length))
          .then(
            () => native.tapComplete(handle, token, 0),
            (error: unknown) => {
              onInterceptorFailure(error, source);
              native.tapComplete(handle, token, 0);
            },
          );
      },
    });
    tap = handle;
    const loop = await attachLoopDevice(fuseFile, {
      directIo: options.directIo ?? true,
      readOnly: false,
      partscan: options.partscan ?? true,
    });
    const partitions = options.partscan === false ? [] : await loopPartitions(loop.device);
    let detached = false;
    const volume: AttachedVolume = {
      source,
      size,
      loopDevice: loop.device,
      fuseFile,
      partitions,
      directIo: loop.directIo,
      notes: loop.note ? [loop.note] : [],
      async setInterceptor(next, unitSize, setOptions = {}) {
        const reset = setOptions.resetTracking ?? false;
        interceptor = next;
        const live = native.tapArm(handle, next ? unitSize : null, false, reset);
        if (!reset || !live) return null;
        if (!tracking) {
          return {
            valid: false,
            reason: 'change tracking is not persisted for this attach',
            baseGeneration: '',
            newGeneration: '',
            ranges: [],
          };
        }
        return tracking.startGeneration(live);
      },
      settleUnits(firstUnit, count) {
        native.tapSettle(handle, firstUnit, count);
      },
      changedRanges() {
        const live = native.tapChanged(handle, false);
        if (!tracking)
          return {
            valid: false,
            reason: 'change tracking is not persisted for this attach',
            generation: null,
            ranges: [],
          };
        const status: TrackingStatus = {
          valid: tracking.invalid === null,
          generation: tracking.generation,
          ranges: tracking.changedRanges(live),
        };
        if (tracking.invalid) status.reason = tracking.invalid;
        return status;
      },
      mountPoints: () => mountPointsOfVolume(loop.device),
      stats: () => native.tapStats(handle),
      async detach() {
        if (detached) return;
        await refuseDetachWhileMounted(source, loop.device);
        await detachLoopDevice(loop.device);
        interceptor = null;
        native.tapArm(handle, null, false, false);
        native.tapStop(handle);
        detached = true;
        const live = native.tapChanged(handle, false);
        // Everything the tap wrote is on stable storage before the volume counts as cleanly detached.
        fsyncSync(fd);
        closeSync(fd);
        await rmdir(mountDir).catch(() => undefined);
        await tracking?.markClean(live);
      },
    };
    return volume;
  } catch (error) {
    if (tap) native.tapStop(tap);
    closeSync(fd);
    await rmdir(mountDir).catch(() => undefined);
    throw error;
  }
}
