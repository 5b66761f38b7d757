// Attaches a protected volume: the source (device or image) is served as one file by a tap helper — a small
// native process of its own (engine/native/src/tap-helper.c) that outlives the engine — and that file is attached
// as a loop device with direct I/O; the user's file system lives on the loop device. Every write passes the
// helper, which records changed blocks and, while a snapshot session is armed, holds writes to armed units until
// this engine has preserved the old data (WriteInterceptor.beforeWrite). A restarted engine adopts the running
// helper (adoptVolume) instead of serving the source a second time.

import { randomUUID } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { readFile, rmdir, stat } from 'node:fs/promises';
import { RefusalError } from '../../protocol/failure.ts';
import { deviceUses } from '../device/busy.ts';
import type { ByteRange } from '../device/types.ts';
import { blockDeviceSize, type TapStats } from '../native/index.ts';
import type { WriteInterceptor } from '../snapshot/types.ts';
import { type ChangedSince, ChangeTracking } from './change-tracking.ts';
import { HelperBusyError, type HelperChannel, type HelperInfo, startHelper } from './helper-channel.ts';
import {
  clearHelperRemains,
  findHelper,
  type HelperPlace,
  helperPlace,
  prepareHelperPlace,
  tapRuntimeDir,
} from './helper-registry.ts';
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
  /** Where helpers keep their sockets and mounts (default tapRuntimeDir()). */
  runtimeDir?: string;
  /**
   * When a helper already serves the source: adopt it (a restarted engine) instead of refusing. Adoption is
   * refused anyway while another engine is connected to that helper.
   */
  adopt?: boolean;
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
   * generation are returned and a new generation starts — atomically with arming. Writes held from the arming
   * instant reach the interceptor only after the caller's continuation has run (arm the session right there).
   */
  setInterceptor(
    interceptor: WriteInterceptor | null,
    unitSize: number,
    options?: { resetTracking?: boolean },
  ): Promise<ChangedSince | null>;
  /** Tells the tap that writes to these units no longer need the interceptor (copied or free). */
  settleUnits(firstUnit: number, count: number): void;
  /** Changed ranges since the current generation (tracking status included). */
  changedRanges(): Promise<TrackingStatus>;
  /** Mount points of the loop device and of its partitions. */
  mountPoints(): Promise<string[]>;
  stats(): Promise<TapStats>;
  /**
   * Freezes the file system at `mountPoint` — inside the helper, which thaws it by itself when this engine's
   * connection ends or `deadlineMs` after the point's first freeze.
   */
  freeze(mountPoint: string, deadlineMs: number): Promise<void>;
  /** Thaws what freeze() froze; throws FreezeDeadlineError when the deadline thawed first (the point failed). */
  thaw(): Promise<void>;
  /** Why the volume is no longer served (its helper died), or null while it is. */
  readonly lost: string | null;
  /** Resolves with that reason when the helper dies (never, if it is released or detached first). */
  whenLost(): Promise<string>;
  /** The process id of the tap helper serving the volume. */
  readonly helperPid: number;
  /** Leaves the helper serving (and the loop device attached) for the next engine; this handle is done. */
  release(): Promise<void>;
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

/** Refuses a source that is already served (by a helper, or as a plain loop device), before touching it. */
async function refuseServed(
  source: string,
  place: HelperPlace,
  adopt: boolean,
): Promise<HelperChannel | null> {
  const found = await findHelper(place);
  if (found === 'dead') {
    // The helper was killed: its loop device answers I/O errors. Clean up what is left, then serve anew.
    for (const line of await clearHelperRemains(place)) process.emitWarning(line);
    return null;
  }
  if (found === 'none') return null;
  if (adopt) return found;
  const info = await found.hello().catch(() => null);
  found.close();
  const loops = await loopDevicesBackedBy(place.fuseFile);
  throw new TapRefusedError(
    info
      ? `cannot attach ${source}: it is already served by a tap (helper pid ${info.pid}${loops.length ? `, as ${loops.join(', ')}` : ''}); detach it first`
      : `cannot attach ${source}: a tap helper serves it for another engine; detach it there first`,
  );
}

export async function attachVolume(source: string, options: AttachOptions = {}): Promise<AttachedVolume> {
  const unavailable = tapUnavailableReason();
  if (unavailable) throw new TapRefusedError(`cannot attach ${source}: ${unavailable}`);
  const place = helperPlace(source, options.runtimeDir ?? tapRuntimeDir());
  const running = await refuseServed(source, place, options.adopt ?? false);
  if (running) return adoptHelper(source, place, running, options);
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
  // O_EXCL on a block device: nobody else can mount it (or open it exclusively) while the helper serves it.
  const flags = constants.O_RDWR | (sourceInfo.isBlockDevice() ? constants.O_EXCL : 0);
  let fd: number;
  try {
    fd = openSync(source, flags);
  } catch (error) {
    throw new TapRefusedError(
      `cannot attach ${source}: opening it for writing failed (${(error as Error).message})`,
    );
  }
  let size: number;
  try {
    size = sourceInfo.isBlockDevice() ? blockDeviceSize(fd) : fstatSync(fd).size;
    if (size <= 0 || size % 512 !== 0)
      throw new TapRefusedError(
        `cannot attach ${source}: its size (${size} bytes) is not a positive multiple of 512`,
      );
    await prepareHelperPlace(place);
    // The helper takes its own copy of the descriptor (and an exclusive lock on it: one server per source).
    await startHelper({ ...place, size, trackUnitSize, source, backingFd: fd });
  } catch (error) {
    if (error instanceof HelperBusyError)
      throw new TapRefusedError(
        `cannot attach ${source}: it is already served by another tap (${error.message})`,
      );
    throw error;
  } finally {
    closeSync(fd);
  }
  const found = await findHelper(place);
  if (typeof found === 'string') throw new Error(`the tap helper for ${source} started but does not answer`);
  const channel = found;
  try {
    const tracking = options.trackingDir
      ? await ChangeTracking.open(options.trackingDir, source, size, trackUnitSize)
      : null;
    if (tracking) await channel.setGeneration(tracking.generation);
    const info = await channel.hello();
    return await serveAsLoopDevice(source, place, channel, info, tracking, options);
  } catch (error) {
    // Nothing uses the new helper yet: stop it (it unmounts and exits).
    for (const device of await loopDevicesBackedBy(place.fuseFile))
      await detachLoopDevice(device).catch(() => {});
    await channel.stop().catch(() => channel.close());
    throw error;
  }
}

/** A restarted engine takes over the helper serving `source`: no remount, the loop device stays. */
async function adoptHelper(
  source: string,
  place: HelperPlace,
  channel: HelperChannel,
  options: AttachOptions,
): Promise<AttachedVolume> {
  // A helper already connected to an engine turns others away (the connection ends unanswered).
  const info = await channel.hello().catch(() => null);
  if (!info) {
    channel.close();
    throw new TapRefusedError(
      `cannot attach ${source}: its tap helper serves another engine (is a second daemon running?)`,
    );
  }
  try {
    if (info.source !== source)
      throw new TapRefusedError(
        `cannot adopt the tap at ${place.socketPath}: it serves ${info.source}, not ${source}`,
      );
    const tracking = options.trackingDir
      ? await ChangeTracking.adopt(options.trackingDir, source, info.size, info.trackUnitSize, info)
      : null;
    return await serveAsLoopDevice(source, place, channel, info, tracking, options);
  } catch (error) {
    channel.close();
    throw error;
  }
}

/** The loop device over the helper's FUSE file (the one already there when adopting), and the volume's handle. */
async function serveAsLoopDevice(
  source: string,
  place: HelperPlace,
  channel: HelperChannel,
  info: HelperInfo,
  tracking: ChangeTracking | null,
  options: AttachOptions,
): Promise<AttachedVolume> {
  const size = info.size;
  const existing = await loopDevicesBackedBy(place.fuseFile);
  const loop = existing[0]
    ? { device: existing[0], directIo: await loopDirectIo(existing[0]) }
    : await attachLoopDevice(place.fuseFile, {
        directIo: options.directIo ?? true,
        readOnly: false,
        partscan: options.partscan ?? true,
      });
  const partitions = options.partscan === false ? [] : await loopPartitions(loop.device);
  let interceptor: WriteInterceptor | null = null;
  let lost: string | null = null;
  let ended = false;
  // Held writes wait behind this gate while arming: the helper may report one before this engine has read the
  // arm's answer, and the session must be armed (by setInterceptor's caller, right after it resolves) first.
  let armGate: Promise<void> = Promise.resolve();
  channel.onAccess = (offset, length, id) => {
    // Through a promise chain: an interceptor that throws synchronously must still complete the request.
    armGate
      .then(() => {
        const current = interceptor;
        return current ? current.beforeWrite(offset, length) : undefined;
      })
      .then(
        () => channel.complete(id, 0),
        (error: unknown) => {
          onInterceptorFailure(error, source);
          channel.complete(id, 0);
        },
      );
  };
  const lostListeners: ((reason: string) => void)[] = [];
  channel.onClose((reason) => {
    if (ended) return;
    lost = `the tap helper serving ${source} is gone (${reason.message}); ${loop.device} answers I/O errors: run 'diskline attach ${source}' to serve it again`;
    for (const listener of lostListeners.splice(0)) listener(lost);
  });
  const notes = 'note' in loop && loop.note ? [loop.note] : [];
  const volume: AttachedVolume = {
    source,
    size,
    loopDevice: loop.device,
    fuseFile: place.fuseFile,
    partitions,
    directIo: loop.directIo,
    notes,
    helperPid: info.pid,
    get lost() {
      return lost;
    },
    whenLost() {
      return new Promise((resolve) => {
        if (lost) resolve(lost);
        else lostListeners.push(resolve);
      });
    },
    async setInterceptor(next, unitSize, setOptions = {}) {
      const reset = setOptions.resetTracking ?? false;
      let openGate = () => {};
      armGate = new Promise((resolve) => {
        openGate = resolve;
      });
      try {
        interceptor = next;
        const newGeneration = reset ? randomUUID() : null;
        const live = await channel.arm(next ? unitSize : 0, newGeneration);
        if (!reset || !live || !newGeneration) return null;
        if (!tracking) {
          return {
            valid: false,
            reason: 'change tracking is not persisted for this attach',
            baseGeneration: '',
            newGeneration: '',
            ranges: [],
          };
        }
        return await tracking.startGeneration(live, newGeneration);
      } finally {
        // After the caller's continuation (a microtask) has armed its session.
        setImmediate(openGate);
      }
    },
    settleUnits(firstUnit, count) {
      channel.settle(firstUnit, count);
    },
    async changedRanges() {
      const live = await channel.changed();
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
    stats: () => channel.stats(),
    freeze: (mountPoint, deadlineMs) => channel.freeze(mountPoint, deadlineMs),
    thaw: () => channel.thaw(),
    async release() {
      if (ended) return;
      ended = true;
      interceptor = null;
      await channel.release();
    },
    async detach() {
      if (ended) return;
      await refuseDetachWhileMounted(source, loop.device);
      if (lost) {
        // Nothing to flush: the helper is gone. Its record stays "attached", so tracking is invalid next time.
        ended = true;
        await clearHelperRemains(place);
        await rmdir(place.mountDir).catch(() => undefined);
        return;
      }
      await detachLoopDevice(loop.device);
      interceptor = null;
      await channel.disarm();
      const live = await channel.changed();
      ended = true;
      // The helper flushes the source (fsync) before it answers: everything written is on stable storage
      // before the volume counts as cleanly detached.
      await channel.stop();
      await rmdir(place.mountDir).catch(() => undefined);
      await tracking?.markClean(live);
    },
  };
  return volume;
}

/** Whether an existing loop device does direct I/O (sysfs), for a volume adopted from a running helper. */
async function loopDirectIo(device: string): Promise<boolean> {
  const name = device.replace('/dev/', '');
  const value = await readFile(`/sys/block/${name}/loop/dio`, 'utf8').catch(() => '0');
  return value.trim() === '1';
}
