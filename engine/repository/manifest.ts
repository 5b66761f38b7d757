// Restore point heads: what was backed up (source identity, partitions), how the point came to be (consistency,
// parent, stats) — and the format 3 manifests that held the whole per-unit map in one sealed file, still read.
// The per-unit map of the points this Diskline writes lives in segments (segment.ts, point-file.ts).
import type { Consistency } from '../../protocol/model.ts';
import { UNITS_PER_SEGMENT } from './segment.ts';

export const MANIFEST_MAGIC = 'DLPOINT1';
/** First bytes of a manifest's plaintext in the binary layout (the older JSON layout starts with `{`). */
const BINARY_MANIFEST_MAGIC = Buffer.from('DLPTMAP2', 'ascii');
const CHUNK_ID_LENGTH = 32;
/** The most a manifest file may hold: the binary layout is one buffer of at most 4 GiB (older JSON ones, 512 MiB). */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024 * 1024;

export interface SourceIdentity {
  path: string;
  model: string | null;
  serial: string | null;
  size: number;
  partitionTable: 'gpt' | 'mbr' | 'none' | null;
}

export interface PartitionRecord {
  index: number;
  start: number;
  size: number;
  type: string;
  filesystem: string | null;
  blockSize: number;
  usedBytes: number;
  /** Why every block of it was copied: its file system's map could not be trusted (e.g. damaged allocation records). */
  copiedWholeBecause?: string;
}

export interface PointStats {
  usedBytes: number;
  changedBytes: number;
  storedBytes: number;
  zeroUnits: number;
  newChunks: number;
}

/** A point's head: everything but its per-unit map (which lives in segments, or in a format 3 manifest's body). */
export interface Manifest {
  /** 1: a format 3 manifest (the whole map in the file); 2: a segmented point (points/ holds the head and list). */
  format: 1 | 2;
  id: string;
  time: string;
  complete: boolean;
  parent: string | null;
  consistency: Consistency;
  source: SourceIdentity;
  partitions: PartitionRecord[];
  unitSize: number;
  unitCount: number;
  /** Units per map segment (the last may hold fewer). */
  unitsPerSegment: number;
  /** Checkpoints: the segments stored partial (with a map of their settled units); the others are whole. */
  partialSegments?: number[];
  stats: PointStats;
  /**
   * Attached volumes: the change-tracking generation the tap started at this point's consistent point; the next
   * backup reads only the changed blocks when the tap's changes are relative to this generation.
   */
  trackingGeneration?: string;
  /**
   * The source's content state when this backup started (engine/device/content-stamp.ts); absent when it was
   * unknown. A backup taking over this checkpoint reuses its units only when the source's stamp is still equal.
   */
  contentStamp?: string;
}

/** A format 3 manifest as stored (JSON layout): the head's fields and the maps in base64. */
interface LegacyManifestFile extends Omit<Manifest, 'format' | 'unitsPerSegment'> {
  format: 1;
  /** base64 bitmap, LSB first */
  used: string;
  /** base64, 32 bytes per chunk id */
  chunks: string;
  /** base64, u32le per unit: 0 = zeros, k = chunks[k - 1] */
  units: string;
  /** Checkpoints only: base64 bitmap of the units already settled (read and stored, or known zero). */
  done?: string;
}

/** A format 3 manifest decoded: the head and the whole disk's maps (read, never written, by this Diskline). */
export interface LegacyManifest extends Manifest {
  used: Uint8Array;
  done?: Uint8Array;
  chunkIds: Buffer[];
  /** 0 = zeros, k = chunkIds[k - 1] */
  units: Uint32Array;
}

export function testBit(bitmap: Uint8Array, unit: number): boolean {
  return ((bitmap[unit >>> 3]! >>> (unit & 7)) & 1) === 1;
}

export function setBit(bitmap: Uint8Array, unit: number): void {
  bitmap[unit >>> 3]! |= 1 << (unit & 7);
}

/**
 * The manifest's plaintext: `BINARY_MANIFEST_MAGIC | json length u32le | JSON of the small fields | used map |
 * done map (checkpoints) | chunk ids | unit map`. The maps and ids grow with the disk, so they stay bytes: as
 * base64 inside one JSON string, a disk of ~12 M distinct chunks passed the engine's longest string.
 */
export function encodeLegacyManifest(manifest: LegacyManifest): Buffer {
  const { used, chunkIds, units, done, unitsPerSegment: _, ...rest } = manifest;
  const head = Buffer.from(
    JSON.stringify({ ...rest, chunkCount: chunkIds.length, checkpointMap: done !== undefined }),
  );
  const bitmapBytes = bitmapLength(manifest.unitCount);
  if (used.byteLength !== bitmapBytes || (done && done.byteLength !== bitmapBytes))
    throw new Error(`point ${manifest.id}: its used or done map does not cover ${manifest.unitCount} units`);
  const total =
    BINARY_MANIFEST_MAGIC.length +
    4 +
    head.length +
    bitmapBytes * (done ? 2 : 1) +
    chunkIds.length * CHUNK_ID_LENGTH +
    units.byteLength;
  const out = Buffer.allocUnsafe(total);
  let at = BINARY_MANIFEST_MAGIC.copy(out, 0);
  at = out.writeUInt32LE(head.length, at);
  at += head.copy(out, at);
  out.set(used, at);
  at += bitmapBytes;
  if (done) {
    out.set(done, at);
    at += bitmapBytes;
  }
  for (const id of chunkIds) at += id.copy(out, at, 0, CHUNK_ID_LENGTH);
  out.set(new Uint8Array(units.buffer, units.byteOffset, units.byteLength), at);
  return out;
}

export function decodeLegacyManifest(plaintext: Buffer, what: string): LegacyManifest {
  if (plaintext[0] === 0x7b) return decodeJsonManifest(plaintext, what);
  const damaged = (why: string) => new Error(`${what} is damaged: ${why}`);
  if (
    plaintext.length < BINARY_MANIFEST_MAGIC.length + 4 ||
    !plaintext.subarray(0, BINARY_MANIFEST_MAGIC.length).equals(BINARY_MANIFEST_MAGIC)
  )
    throw damaged('unknown manifest layout');
  let at = BINARY_MANIFEST_MAGIC.length;
  const headLength = plaintext.readUInt32LE(at);
  at += 4;
  if (at + headLength > plaintext.length) throw damaged('its fields are cut short');
  const { chunkCount, checkpointMap, ...rest } = JSON.parse(
    plaintext.toString('utf8', at, at + headLength),
  ) as Omit<LegacyManifestFile, 'used' | 'chunks' | 'units' | 'done'> & {
    chunkCount: number;
    checkpointMap: boolean;
  };
  at += headLength;
  if (!Number.isSafeInteger(rest.unitCount) || rest.unitCount < 0 || !Number.isSafeInteger(chunkCount))
    throw damaged('bad unit or chunk count');
  const bitmapBytes = bitmapLength(rest.unitCount);
  const expected = bitmapBytes * (checkpointMap ? 2 : 1) + chunkCount * CHUNK_ID_LENGTH + rest.unitCount * 4;
  if (plaintext.length - at !== expected) throw damaged('its maps have the wrong length');
  const used = new Uint8Array(plaintext.subarray(at, at + bitmapBytes));
  at += bitmapBytes;
  let done: Uint8Array | undefined;
  if (checkpointMap) {
    done = new Uint8Array(plaintext.subarray(at, at + bitmapBytes));
    at += bitmapBytes;
  }
  const chunkIds: Buffer[] = new Array(chunkCount);
  for (let i = 0; i < chunkCount; i++, at += CHUNK_ID_LENGTH)
    chunkIds[i] = plaintext.subarray(at, at + CHUNK_ID_LENGTH);
  const unitMap = new Uint32Array(rest.unitCount);
  Buffer.from(unitMap.buffer).set(plaintext.subarray(at));
  for (const k of unitMap) if (k > chunkCount) throw damaged(`unit map names chunk ${k}`);
  return {
    ...rest,
    format: 1,
    unitsPerSegment: UNITS_PER_SEGMENT,
    used,
    ...(done ? { done } : {}),
    chunkIds,
    units: unitMap,
  };
}

/** The JSON layout written before the binary one (maps and ids as base64 strings); still read. */
function decodeJsonManifest(plaintext: Buffer, what: string): LegacyManifest {
  const file = JSON.parse(plaintext.toString('utf8')) as LegacyManifestFile;
  const { used, chunks, units, done, ...rest } = file;
  const chunkBytes = Buffer.from(chunks, 'base64');
  const chunkIds: Buffer[] = [];
  for (let at = 0; at < chunkBytes.length; at += 32) chunkIds.push(chunkBytes.subarray(at, at + 32));
  const unitBytes = Buffer.from(units, 'base64');
  const unitMap = new Uint32Array(file.unitCount);
  if (unitBytes.length !== file.unitCount * 4)
    throw new Error(`${what} is damaged: unit map has the wrong length`);
  Buffer.from(unitMap.buffer).set(unitBytes);
  for (const k of unitMap)
    if (k > chunkIds.length) throw new Error(`${what} is damaged: unit map names chunk ${k}`);
  return {
    ...rest,
    format: 1,
    unitsPerSegment: UNITS_PER_SEGMENT,
    used: new Uint8Array(Buffer.from(used, 'base64')),
    ...(done ? { done: new Uint8Array(Buffer.from(done, 'base64')) } : {}),
    chunkIds,
    units: unitMap,
  };
}

function bitmapLength(unitCount: number): number {
  return Math.ceil(unitCount / 8);
}

/** Bitmap of the units any byte of `ranges` touches. */
export function bitmapFromRanges(
  ranges: readonly { start: number; length: number }[],
  unitSize: number,
  unitCount: number,
): Uint8Array {
  const bitmap = new Uint8Array(Math.ceil(unitCount / 8));
  for (const range of ranges) {
    if (range.length <= 0) continue;
    const first = Math.floor(range.start / unitSize);
    const last = Math.min(unitCount - 1, Math.floor((range.start + range.length - 1) / unitSize));
    for (let unit = first; unit <= last; unit++) setBit(bitmap, unit);
  }
  return bitmap;
}

/** Byte ranges (merged, in order, clipped to `size`) of the units for which `take(unit)` holds. */
export function rangesOfUnits(
  unitCount: number,
  unitSize: number,
  size: number,
  take: (unit: number) => boolean,
): { start: number; length: number }[] {
  const ranges: { start: number; length: number }[] = [];
  let runStart = -1;
  for (let unit = 0; unit <= unitCount; unit++) {
    const taken = unit < unitCount && take(unit);
    if (taken && runStart < 0) runStart = unit;
    if (!taken && runStart >= 0) {
      const start = runStart * unitSize;
      ranges.push({ start, length: Math.min(size, unit * unitSize) - start });
      runStart = -1;
    }
  }
  return ranges;
}
