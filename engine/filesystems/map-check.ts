// The cross-check of a used map against the file system's own records. An allocation bitmap (or FAT) is one
// record among several: files, directories and metadata also say where their bytes are (NTFS data runs, FAT
// chains, exFAT directory entries, ext extent trees). A map that leaves out bytes those records use would make a
// backup silently short, so every such extent must lie inside the map; one that does not is damage.
import type { ByteRange } from '../device/types.ts';
import { FilesystemDamagedError, type UsedMap, type Volume } from './types.ts';

/** What a file system's cross-check walks: its records, each extent handed to `check.reference`. */
export interface MapCrossCheck {
  /** The record the map was read from, for messages: "$Bitmap", "the first FAT", "the block bitmaps". */
  readonly allocationRecord: string;
  /** The tool that repairs it: "chkdsk", "fsck.vfat", "e2fsck". */
  readonly repairTool: string;
  /** Walks the file system's records; throws FilesystemDamagedError when they cannot be read. */
  run(volume: Volume, map: UsedMap, check: ReferenceCheck): Promise<void>;
}

/** A used map whose bytes miss some the file system's own records reference: copying only the map would lose them. */
export class UsedMapMismatchError extends FilesystemDamagedError {
  constructor(message: string) {
    super(message);
    this.name = 'UsedMapMismatchError';
  }
}

interface Miss {
  start: number;
  length: number;
  owner: string;
}

/**
 * Collects the extents a file system's records reference and notes those the used map does not cover. Extents
 * come in any order; each is looked up by binary search, so the check costs a lookup per extent, not a list.
 */
export class ReferenceCheck {
  readonly #starts: Float64Array;
  readonly #ends: Float64Array;
  readonly #volumeSize: number;
  /** Extents handed in (a measure of how much the check looked at). */
  extents = 0;
  /** Bytes referenced that the map leaves out (an extent referenced twice counts twice). */
  missingBytes = 0;
  /** The first extent found outside the map, with what references it. */
  firstMiss: Miss | null = null;

  constructor(usedRanges: readonly ByteRange[], volumeSize: number) {
    this.#starts = Float64Array.from(usedRanges, (r) => r.start);
    this.#ends = Float64Array.from(usedRanges, (r) => r.start + r.length);
    this.#volumeSize = volumeSize;
  }

  /** True when every byte of [start, start + length) lies inside the map. */
  covers(start: number, length: number): boolean {
    if (length <= 0) return true;
    const at = this.#lastStartingAtOrBefore(start);
    return at >= 0 && this.#ends[at]! >= start + length;
  }

  /**
   * `owner` (called only on a miss, to name it in the warning) references bytes [start, start + length). Bytes
   * outside the volume are missing too: a record pointing past the end is damaged.
   */
  reference(start: number, length: number, owner: () => string): void {
    if (!(length > 0)) return;
    this.extents++;
    if (Number.isSafeInteger(start) && start >= 0 && start + length <= this.#volumeSize) {
      if (this.covers(start, length)) return;
    }
    const missing = this.#missingIn(start, length);
    if (missing === 0) return;
    this.missingBytes += missing;
    this.firstMiss ??= { start, length, owner: owner() };
  }

  /** Bytes of [start, start + length) the map leaves out (all of them when the extent is not inside the volume). */
  #missingIn(start: number, length: number): number {
    if (!Number.isSafeInteger(start) || start < 0 || start + length > this.#volumeSize) return length;
    const end = start + length;
    let covered = 0;
    for (let at = Math.max(0, this.#lastStartingAtOrBefore(start)); at < this.#starts.length; at++) {
      const rangeStart = this.#starts[at]!;
      if (rangeStart >= end) break;
      covered += Math.max(0, Math.min(end, this.#ends[at]!) - Math.max(start, rangeStart));
    }
    return length - covered;
  }

  #lastStartingAtOrBefore(offset: number): number {
    let low = 0;
    let high = this.#starts.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      if (this.#starts[middle]! <= offset) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found;
  }
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * Runs `crossCheck` over `map`; throws UsedMapMismatchError naming the volume, how much is missing and the first
 * record that references it when the map leaves out bytes the file system uses.
 */
export async function crossCheckMap(
  volume: Volume,
  map: UsedMap,
  crossCheck: MapCrossCheck,
): Promise<ReferenceCheck> {
  const check = new ReferenceCheck(map.usedRanges, volume.size);
  await crossCheck.run(volume, map, check);
  const miss = check.firstMiss;
  if (miss) {
    throw new UsedMapMismatchError(
      `${volume.name}: ${crossCheck.allocationRecord} of the ${map.filesystem} file system leaves out ` +
        `${formatBytes(check.missingBytes)} that its own records use (first: bytes ${miss.start}–` +
        `${miss.start + miss.length}, ${miss.owner}), so a copy of only the used blocks would lose them; ` +
        `its allocation records are damaged — run ${crossCheck.repairTool} on it`,
    );
  }
  return check;
}
