// Restore point manifests: what was backed up (source identity, partitions, used map), which chunk holds each
// unit, and how the point came to be (consistency, parent, stats). Stored sealed as JSON; see the format doc.
import type { Consistency } from '../../protocol/model.ts';

export const MANIFEST_MAGIC = 'DLPOINT1';

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
}

export interface PointStats {
  usedBytes: number;
  changedBytes: number;
  storedBytes: number;
  zeroUnits: number;
  newChunks: number;
}

/** The manifest as stored (JSON). */
export interface ManifestFile {
  format: 1;
  id: string;
  time: string;
  complete: boolean;
  parent: string | null;
  consistency: Consistency;
  source: SourceIdentity;
  partitions: PartitionRecord[];
  unitSize: number;
  unitCount: number;
  /** base64 bitmap, LSB first */
  used: string;
  /** base64, 32 bytes per chunk id */
  chunks: string;
  /** base64, u32le per unit: 0 = zeros, k = chunks[k - 1] */
  units: string;
  stats: PointStats;
  /**
   * Attached volumes: the change-tracking generation the tap started at this point's consistent point; the next
   * backup reads only the changed blocks when the tap's changes are relative to this generation.
   */
  trackingGeneration?: string;
  /** Checkpoints only: base64 bitmap of the units already settled (read and stored, or known zero). */
  done?: string;
}

/** A manifest decoded for use: the unit map as arrays. */
export interface Manifest extends Omit<ManifestFile, 'used' | 'chunks' | 'units' | 'done'> {
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

export function isUsed(manifest: Pick<Manifest, 'used'>, unit: number): boolean {
  return testBit(manifest.used, unit);
}

export function encodeManifest(manifest: Manifest): Buffer {
  const { used, chunkIds, units, done, ...rest } = manifest;
  const file: ManifestFile = {
    ...rest,
    ...(done ? { done: Buffer.from(done.buffer, done.byteOffset, done.byteLength).toString('base64') } : {}),
    used: Buffer.from(used.buffer, used.byteOffset, used.byteLength).toString('base64'),
    chunks: Buffer.concat(chunkIds).toString('base64'),
    units: Buffer.from(units.buffer, units.byteOffset, units.byteLength).toString('base64'),
  };
  return Buffer.from(JSON.stringify(file));
}

export function decodeManifest(plaintext: Buffer, what: string): Manifest {
  const file = JSON.parse(plaintext.toString('utf8')) as ManifestFile;
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
    used: new Uint8Array(Buffer.from(used, 'base64')),
    ...(done ? { done: new Uint8Array(Buffer.from(done, 'base64')) } : {}),
    chunkIds,
    units: unitMap,
  };
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
