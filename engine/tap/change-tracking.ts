// Changed-block tracking persisted per attached volume, so the next backup reads only what changed since the
// last restore point. The record lives next to the daemon's state: "<id>.json" (who, generation, state) and
// "<id>.bitmap" (1 bit per track unit). It is trusted only when it is provably complete:
//  - it is marked "attached" (dirty) at attach and "clean" only after a clean detach: an engine crash or a
//    kill leaves "attached", and the next attach reports tracking invalid;
//  - an image's size and mtime (moved to a value no later write can be stamped with), or a block device's size,
//    boot and sectors-written counter, are recorded at detach; a mismatch at the next attach means something
//    wrote around the tap.
// An invalid record makes the next backup read everything and say why. A generation id names the point the
// changes are relative to; the repository's point records it, and a backup uses the changes only if its parent
// point recorded the same generation.
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, stat, utimes, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { ByteRange } from '../device/types.ts';

export interface TrackingRecord {
  source: string;
  size: number;
  trackUnitSize: number;
  /** Changes are relative to the restore point that recorded this generation. */
  generation: string;
  state: 'attached' | 'clean';
  /** Set when changes since `generation` are known to be incomplete (kept across a clean detach). */
  invalid?: string | null;
  /** Identity of the source when it was last released, to detect writes that bypassed the tap. */
  identity: SourceIdentity | null;
}

export interface SourceIdentity {
  size: number;
  /** Image files: modification time in ms. */
  mtimeMs?: number;
  /** Image files: modification time in ns, as set at release (see releasedIdentity); compared when present. */
  mtimeNs?: string;
  /** Block devices: this boot's id and the device's sectors-written counter (resets at reboot). */
  bootId?: string;
  sectorsWritten?: number;
}

/** What a backup learns from tracking at its consistent point. */
export interface ChangedSince {
  /** True when `ranges` are every byte written since the point that recorded `baseGeneration`. */
  valid: boolean;
  /** Why tracking cannot be used (valid false). */
  reason?: string;
  baseGeneration: string;
  /** The generation the new point records. */
  newGeneration: string;
  ranges: ByteRange[];
}

/** Reads the identity of an image or a block device (see SourceIdentity). */
export async function sourceIdentity(path: string, size: number): Promise<SourceIdentity> {
  const info = await stat(path, { bigint: true });
  if (!info.isBlockDevice())
    return { size, mtimeMs: Number(info.mtimeNs / 1_000_000n), mtimeNs: info.mtimeNs.toString() };
  const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
  const name = basename(path);
  const counters = await readFile(`/sys/class/block/${name}/stat`, 'utf8').catch(() => '');
  // /sys/block/X/stat field 7 (index 6) is sectors written.
  const sectorsWritten = Number(counters.trim().split(/\s+/)[6] ?? Number.NaN);
  return { size, bootId, sectorsWritten: Number.isFinite(sectorsWritten) ? sectorsWritten : undefined };
}

/**
 * The identity of a source being released. An image gets an mtime no later write can carry: file systems
 * stamp writes from a coarse clock (one tick is several ms), so a write just after the release could get the
 * very mtime read here and go unseen. Its mtime is moved 1 ms back, before any time a later write can be
 * stamped with, and that exact value (in ns) is recorded.
 */
export async function releasedIdentity(path: string, size: number): Promise<SourceIdentity> {
  const info = await stat(path, { bigint: true });
  if (info.isBlockDevice()) return sourceIdentity(path, size);
  const planted = info.mtimeNs - 1_000_000n;
  await utimes(path, Number(info.atimeNs) / 1e9, Number(planted) / 1e9);
  const after = await stat(path, { bigint: true });
  return { size, mtimeMs: Number(after.mtimeNs / 1_000_000n), mtimeNs: after.mtimeNs.toString() };
}

function identityMismatch(recorded: SourceIdentity, now: SourceIdentity): string | null {
  if (recorded.size !== now.size) return `its size changed from ${recorded.size} to ${now.size} bytes`;
  const modified =
    recorded.mtimeNs !== undefined
      ? recorded.mtimeNs !== now.mtimeNs
      : recorded.mtimeMs !== undefined && recorded.mtimeMs !== now.mtimeMs;
  if (modified) return 'the image was modified while it was not attached';
  if (recorded.bootId !== undefined && recorded.bootId !== now.bootId)
    return 'the machine restarted since the last detach, so writes made meanwhile cannot be ruled out';
  if (recorded.sectorsWritten !== undefined && recorded.sectorsWritten !== now.sectorsWritten)
    return 'the device was written while it was not attached';
  return null;
}

/** Converts a bitmap (1 bit per unit, LSB first) to merged byte ranges, clipped to `size`. */
export function bitmapToRanges(bitmap: Uint8Array, unitSize: number, size: number): ByteRange[] {
  const ranges: ByteRange[] = [];
  let runStart = -1;
  const units = Math.ceil(size / unitSize);
  for (let unit = 0; unit <= units; unit++) {
    const set = unit < units && ((bitmap[unit >> 3] ?? 0) >> (unit & 7)) & 1;
    if (set && runStart < 0) runStart = unit;
    if (!set && runStart >= 0) {
      const start = runStart * unitSize;
      ranges.push({ start, length: Math.min(unit * unitSize, size) - start });
      runStart = -1;
    }
  }
  return ranges;
}

function orInto(target: Uint8Array, source: Uint8Array): void {
  for (let i = 0; i < target.length && i < source.length; i++)
    target[i] = (target[i] ?? 0) | (source[i] ?? 0);
}

/** The tracking record of one attached volume; the live bitmap is the tap's, this carries what came before. */
export class ChangeTracking {
  readonly recordPath: string;
  readonly bitmapPath: string;
  private record: TrackingRecord;
  /** Changes persisted by earlier attaches since `generation`, OR'd with the tap's live bitmap. */
  private carried: Uint8Array;
  private invalidReason: string | null;

  private constructor(
    dir: string,
    id: string,
    record: TrackingRecord,
    carried: Uint8Array,
    invalid: string | null,
  ) {
    this.recordPath = join(dir, `${id}.json`);
    this.bitmapPath = join(dir, `${id}.bitmap`);
    this.record = record;
    this.carried = carried;
    this.invalidReason = invalid;
  }

  /** Loads (or starts) the record for `source` and marks it attached. */
  static async open(
    dir: string,
    source: string,
    size: number,
    trackUnitSize: number,
  ): Promise<ChangeTracking> {
    await mkdir(dir, { recursive: true });
    const id = createHash('sha256').update(source).digest('hex').slice(0, 24);
    const bitmapBytes = Math.ceil(Math.ceil(size / trackUnitSize) / 8);
    const now = await sourceIdentity(source, size);
    let previous: TrackingRecord | null = null;
    try {
      previous = JSON.parse(await readFile(join(dir, `${id}.json`), 'utf8')) as TrackingRecord;
    } catch {
      previous = null;
    }
    let invalid: string | null = null;
    let carried = new Uint8Array(bitmapBytes);
    if (!previous) invalid = 'no change-tracking record for this volume yet';
    else if (previous.state === 'attached')
      invalid =
        'the previous attach ended without a clean detach (engine crash or killed), so writes may be missing';
    else if (previous.invalid) invalid = previous.invalid;
    else if (previous.trackUnitSize !== trackUnitSize || previous.size !== size)
      invalid = 'the volume size or tracking unit changed since the last detach';
    else if (!previous.identity) invalid = 'the last detach recorded no source identity';
    else {
      invalid = identityMismatch(previous.identity, now);
      if (!invalid) {
        const saved = await readFile(join(dir, `${id}.bitmap`)).catch(() => null);
        if (!saved || saved.length !== bitmapBytes)
          invalid = 'the change bitmap is missing or has the wrong size';
        else carried = new Uint8Array(saved);
      }
    }
    const record: TrackingRecord = {
      source,
      size,
      trackUnitSize,
      generation: previous?.generation ?? randomUUID(),
      state: 'attached',
      // Persisted, so that an engine adopting the running tap after a crash knows it too.
      invalid,
      identity: null,
    };
    const tracking = new ChangeTracking(dir, id, record, carried, invalid);
    await tracking.save();
    return tracking;
  }

  /**
   * The record of a volume whose tap helper kept serving while the engine was away (restart, crash, kill): the
   * helper's bitmap holds every write since its generation, the persisted bitmap what came before (a superset at
   * worst). Trusted only when the helper's generation is the record's and no backup was armed when an engine left.
   */
  static async adopt(
    dir: string,
    source: string,
    size: number,
    trackUnitSize: number,
    helper: { generation: string; trackingLost: boolean },
  ): Promise<ChangeTracking> {
    const id = createHash('sha256').update(source).digest('hex').slice(0, 24);
    const bitmapBytes = Math.ceil(Math.ceil(size / trackUnitSize) / 8);
    let record: TrackingRecord | null = null;
    try {
      record = JSON.parse(await readFile(join(dir, `${id}.json`), 'utf8')) as TrackingRecord;
    } catch {
      record = null;
    }
    let invalid: string | null = null;
    let carried = new Uint8Array(bitmapBytes);
    if (!record) invalid = 'no change-tracking record for this volume';
    else if (helper.trackingLost)
      invalid = 'an engine stopped during a backup of this volume, so its tracked changes belong to no point';
    else if (record.generation !== helper.generation)
      invalid =
        "the tap's changes are relative to another generation than the record's (the engine stopped while a point was being taken)";
    else if (record.invalid) invalid = record.invalid;
    else if (record.state !== 'attached' || record.size !== size || record.trackUnitSize !== trackUnitSize)
      invalid = 'the change-tracking record does not describe this running tap';
    else {
      const saved = await readFile(join(dir, `${id}.bitmap`)).catch(() => null);
      if (saved && saved.length !== bitmapBytes) invalid = 'the change bitmap has the wrong size';
      else if (saved) carried = new Uint8Array(saved);
    }
    const adopted: TrackingRecord = {
      source,
      size,
      trackUnitSize,
      generation: helper.generation || randomUUID(),
      state: 'attached',
      invalid,
      identity: null,
    };
    const tracking = new ChangeTracking(dir, id, adopted, carried, invalid);
    await tracking.save();
    return tracking;
  }

  get generation(): string {
    return this.record.generation;
  }

  /** Null when the changes since `generation` are complete; otherwise why not. */
  get invalid(): string | null {
    return this.invalidReason;
  }

  /** Changed ranges since `generation`, given the tap's live bitmap (without consuming anything). */
  changedRanges(live: Uint8Array): ByteRange[] {
    const merged = new Uint8Array(this.carried);
    orInto(merged, live);
    return bitmapToRanges(merged, this.record.trackUnitSize, this.record.size);
  }

  /**
   * At a consistent point: `liveUntilNow` is the tap's bitmap taken (and cleared) atomically with arming, when
   * the tap started `newGeneration`. Returns what changed since the previous generation and starts a new generation, valid from here on.
   */
  async startGeneration(
    liveUntilNow: Uint8Array,
    newGeneration: string = randomUUID(),
  ): Promise<ChangedSince> {
    const result: ChangedSince = {
      valid: this.invalidReason === null,
      baseGeneration: this.record.generation,
      newGeneration,
      ranges: this.changedRanges(liveUntilNow),
    };
    if (this.invalidReason) result.reason = this.invalidReason;
    this.record.generation = result.newGeneration;
    this.carried = new Uint8Array(this.carried.length);
    this.invalidReason = null;
    this.record.invalid = null;
    await this.save();
    return result;
  }

  /** After a clean detach: persists the changes since `generation` and the source's identity, marks clean. */
  async markClean(live: Uint8Array): Promise<void> {
    const merged = new Uint8Array(this.carried);
    orInto(merged, live);
    await writeAtomically(this.bitmapPath, merged);
    this.record.identity = await releasedIdentity(this.record.source, this.record.size);
    // A record that was already invalid stays so: a generation whose changes are incomplete must not be used.
    this.record.invalid = this.invalidReason;
    this.record.state = 'clean';
    await this.save();
  }

  private async save(): Promise<void> {
    await writeAtomically(this.recordPath, Buffer.from(`${JSON.stringify(this.record, null, 2)}\n`));
  }
}

async function writeAtomically(path: string, data: Uint8Array): Promise<void> {
  const temporary = `${path}.tmp-${process.pid}`;
  await writeFile(temporary, data, { flush: true });
  await rename(temporary, path);
}

/**
 * What a backup may skip: the changed ranges, when tracking is valid and relative to the parent point (the
 * parent recorded `tracking.baseGeneration` when it was taken); otherwise null and why the backup reads
 * everything. The new point records `tracking.newGeneration`.
 */
export function changesSinceParent(
  tracking: ChangedSince | null,
  parentGeneration: string | null | undefined,
): { ranges: ByteRange[] | null; reason: string | null } {
  if (!tracking) return { ranges: null, reason: 'change tracking is not available for this volume' };
  if (!tracking.valid) return { ranges: null, reason: `change tracking is invalid: ${tracking.reason}` };
  if (!parentGeneration)
    return { ranges: null, reason: 'the previous point recorded no change-tracking generation' };
  if (parentGeneration !== tracking.baseGeneration)
    return {
      ranges: null,
      reason:
        'the changes tracked are relative to another point than the previous one (a point was taken elsewhere)',
    };
  return { ranges: tracking.ranges, reason: null };
}
