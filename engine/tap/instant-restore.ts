// Instant restore: the target T is served through the tap at once (a loop device the user can mount and use)
// while a background copier fills it from the restore point. Every unit starts "not restored" (its intercept
// bit set, for reads and writes): the first access to such a unit waits while that unit is fetched from the
// repository and written to T, then proceeds on T; a write therefore lands on restored data and marks its unit
// done. The copier walks the remaining units in disk order. Interrupted (detach, crash) before the copier
// finishes, T is partly restored and must not be used on its own: the same restore again resumes it from its
// journal (restore-journal.ts), keeping what users wrote meanwhile.
import { closeSync, constants, fstatSync, openSync, realpathSync, write as writeCallback } from 'node:fs';
import { mkdtemp, rmdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { deviceUses } from '../device/busy.ts';
import { blockDeviceSize, nativeHelper, type TapHandle } from '../native/index.ts';
import { refuseDetachWhileMounted, TapRefusedError } from './attach.ts';
import { journalPathFor, journalResumes, RestoreJournal } from './restore-journal.ts';
import { attachLoopDevice, detachLoopDevice, tapUnavailableReason } from './system-state.ts';

const writeAt = promisify(writeCallback);
const EIO = 5;

/** What instant restore needs of a restore point (the repository's PointReader satisfies it). */
export interface RestorablePoint {
  readonly manifest: {
    id: string;
    unitSize: number;
    unitCount: number;
    source: { size: number };
    /** 0 = the unit is zeros. */
    units: Uint32Array;
  };
  read(offset: number, length: number): Promise<Buffer>;
}

export interface InstantRestoreOptions {
  /** Scan the loop device for partitions (default true). */
  partscan?: boolean;
  /** Limit the background copier (bytes per second); accesses by users are never limited. */
  copyBytesPerSecond?: number;
  /** The target reads as zeros already (a new or emptied image): zero units are not written. Ignored on resume. */
  targetIsZeroed?: boolean;
  /** Where the restore's journal lives (default: beside an image, in the engine's state for a device). */
  journalPath?: string;
}

/**
 * The name a journal records for `target`. A target the engine holds is given as its descriptor's magic link
 * (/proc/PID/fd/N), which differs from one engine process to the next: the journal names what it leads to, so a
 * restarted engine still recognises the restore it resumes.
 */
function journalTargetName(target: string): string {
  const absolute = resolve(target);
  if (!absolute.startsWith('/proc/')) return absolute;
  try {
    return realpathSync(absolute);
  } catch {
    return absolute;
  }
}

/** True when an unfinished instant restore of this point to `target` can resume (so the target must be kept). */
export function instantRestoreResumes(
  point: RestorablePoint,
  target: string,
  isDevice: boolean,
  journalPath = journalPathFor(resolve(target), isDevice),
): boolean {
  const { id, unitSize, source } = point.manifest;
  return journalResumes(journalPath, {
    point: id,
    target: journalTargetName(target),
    size: source.size,
    unitSize,
  });
}

export interface InstantRestoreProgress {
  restoredUnits: number;
  totalUnits: number;
  /** Units restored because someone read or wrote them before the copier got there. */
  onDemandUnits: number;
  /** Units found restored in the journal of an interrupted run of this same restore. */
  resumedUnits: number;
  complete: boolean;
}

export interface InstantRestore {
  readonly target: string;
  readonly loopDevice: string;
  readonly fuseFile: string;
  progress(): InstantRestoreProgress;
  /** Resolves when every unit is on the target; rejects if the copier failed (reads from the repository). */
  readonly whenComplete: Promise<void>;
  /** Detaches (refused while mounted). Before completion the target is left partly restored, and this says so. */
  detach(): Promise<void>;
}

export async function startInstantRestore(
  point: RestorablePoint,
  target: string,
  options: InstantRestoreOptions = {},
): Promise<InstantRestore> {
  const unavailable = tapUnavailableReason();
  if (unavailable) throw new TapRefusedError(`cannot restore to ${target} instantly: ${unavailable}`);
  const native = nativeHelper();
  const { unitSize, unitCount } = point.manifest;
  const size = point.manifest.source.size;
  const existing = await stat(target).catch(() => null);
  const isDevice = existing?.isBlockDevice() ?? false;
  if (isDevice) {
    const uses = await deviceUses(target);
    if (uses.length) throw new TapRefusedError(`refusing to restore to ${target}: ${uses.join('; ')}`);
  } else if (existing && !existing.isFile()) {
    throw new TapRefusedError(`refusing to restore to ${target}: not an image file or a block device`);
  }
  // A new or empty image reads as zeros: zero units need no writing there (unless this resumes a restore).
  let targetStartsZeroed =
    options.targetIsZeroed ?? (!existing || (existing.isFile() && existing.size === 0));
  const fd = openSync(
    target,
    constants.O_RDWR | constants.O_CREAT | (isDevice ? constants.O_EXCL : 0),
    0o600,
  );
  let tap: TapHandle | null = null;
  let journal: RestoreJournal | null = null;
  const mountDir = await mkdtemp(join(tmpdir(), 'diskline-instant-'));
  try {
    const targetSize = isDevice ? blockDeviceSize(fd) : fstatSync(fd).size;
    if (isDevice && targetSize < size)
      throw new TapRefusedError(
        `refusing to restore to ${target}: it holds ${targetSize} bytes, the point needs ${size}; choose a bigger target`,
      );
    if (!isDevice && targetSize < size) {
      const { ftruncateSync } = await import('node:fs');
      ftruncateSync(fd, size);
    }

    const opened = await RestoreJournal.open(
      options.journalPath ?? journalPathFor(resolve(target), isDevice),
      { point: point.manifest.id, target: journalTargetName(target), size, unitSize },
      unitCount,
      fd,
    );
    journal = opened.journal;
    const restored = opened.restored;
    if (opened.resumed) targetStartsZeroed = false;
    const restoreJournal = journal;
    const inFlight = new Map<number, Promise<void>>();
    let restoredUnits = 0;
    let onDemandUnits = 0;
    let resumedUnits = 0;
    let stopping = false;

    const restoreUnit = (unit: number, onDemand: boolean): Promise<void> => {
      if (restored[unit]) return Promise.resolve();
      const running = inFlight.get(unit);
      if (running) return running;
      const work = (async () => {
        const offset = unit * unitSize;
        const length = Math.min(unitSize, size - offset);
        if (!(targetStartsZeroed && point.manifest.units[unit] === 0)) {
          const data = await point.read(offset, length);
          let done = 0;
          while (done < length)
            done += (await writeAt(fd, data, done, length - done, offset + done)).bytesWritten;
        }
        // Durable in the journal before anyone may touch the unit: a resumed restore must never overwrite it.
        await restoreJournal.record(unit);
        restored[unit] = 1;
        restoredUnits++;
        if (onDemand) onDemandUnits++;
        native.tapSettle(handle, unit, 1);
      })().finally(() => inFlight.delete(unit));
      inFlight.set(unit, work);
      return work;
    };

    const restoreRange = async (offset: number, length: number): Promise<void> => {
      const first = Math.floor(offset / unitSize);
      const last = Math.min(unitCount - 1, Math.floor((offset + Math.max(1, length) - 1) / unitSize));
      const pending: Promise<void>[] = [];
      for (let unit = first; unit <= last; unit++) pending.push(restoreUnit(unit, true));
      await Promise.all(pending);
    };

    const handle: TapHandle = native.tapStart({
      mountDir,
      fileName: 'volume',
      size,
      backingFd: fd,
      readOnly: false,
      trackUnitSize: unitSize,
      onAccess: (_kind, offset, length, token) => {
        restoreRange(offset, length).then(
          () => native.tapComplete(handle, token, 0),
          (error: unknown) => {
            process.emitWarning(
              `instant restore of point ${point.manifest.id} to ${target}: fetching bytes at ${offset} failed (${(error as Error).message})`,
            );
            native.tapComplete(handle, token, EIO);
          },
        );
      },
    });
    tap = handle;
    // Every unit starts not restored: reads and writes of it wait for it. Units the journal of an interrupted
    // run records, and zero units of a target known to read as zeros, are settled at once.
    native.tapArm(handle, unitSize, true, false);
    for (let unit = 0; unit < unitCount; unit++) if (restored[unit]) resumedUnits++;
    if (targetStartsZeroed) {
      for (let unit = 0; unit < unitCount; unit++) if (point.manifest.units[unit] === 0) restored[unit] = 1;
      await restoreJournal.recordAll(restored);
    }
    for (let unit = 0; unit < unitCount; unit++) {
      if (!restored[unit]) continue;
      restoredUnits++;
      native.tapSettle(handle, unit, 1);
    }
    const fuseFile = join(mountDir, 'volume');
    const loop = await attachLoopDevice(fuseFile, {
      directIo: true,
      readOnly: false,
      partscan: options.partscan ?? true,
    });

    const copier = (async () => {
      const started = performance.now();
      let copiedBytes = 0;
      // A few units at a time, so their journal records share syncs.
      const window: Promise<void>[] = [];
      for (let unit = 0; unit < unitCount && !stopping; unit++) {
        if (restored[unit]) continue;
        window.push(restoreUnit(unit, false));
        copiedBytes += unitSize;
        if (window.length < 16 && unit + 1 < unitCount) continue;
        await Promise.all(window.splice(0));
        if (options.copyBytesPerSecond) {
          const due = (copiedBytes / options.copyBytesPerSecond) * 1000 - (performance.now() - started);
          if (due > 0) await sleep(due);
        }
      }
      await Promise.all(window);
      if (stopping) throw new Error(`instant restore to ${target} was stopped before it finished`);
      native.tapArm(handle, null, false, false);
      await restoreJournal.close(true);
    })();
    copier.catch(() => undefined);

    let detached = false;
    return {
      target,
      loopDevice: loop.device,
      fuseFile,
      progress: () => ({
        restoredUnits,
        totalUnits: unitCount,
        onDemandUnits,
        resumedUnits,
        complete: restoredUnits === unitCount,
      }),
      whenComplete: copier,
      async detach() {
        if (detached) return;
        await refuseDetachWhileMounted(target, loop.device);
        stopping = true;
        await copier.catch(() => undefined);
        await Promise.allSettled([...inFlight.values()]);
        await detachLoopDevice(loop.device);
        native.tapStop(handle);
        detached = true;
        if (restoredUnits < unitCount) await restoreJournal.close(false);
        closeSync(fd);
        await rmdir(mountDir).catch(() => undefined);
        if (restoredUnits < unitCount)
          throw new Error(
            `${target} is only partly restored (${restoredUnits} of ${unitCount} units): do not use it on its own; restore point ${point.manifest.id} again`,
          );
      },
    };
  } catch (error) {
    if (tap) native.tapStop(tap);
    await journal?.close(false);
    closeSync(fd);
    await rmdir(mountDir).catch(() => undefined);
    throw error;
  }
}
