// Map segments: a point's per-unit map cut into fixed runs of units (16,384: 1 GiB of 64 KiB units), each stored
// once as a sealed object named by a keyed hash of its content, so points share every segment that did not
// change and a point's cost follows what changed, not the size of the disk. See docs/repository-format.md.
import { createHmac } from 'node:crypto';

/** Units per segment in the points this Diskline writes (readers take it from each point's head). */
export const UNITS_PER_SEGMENT = 16_384;
export const SEGMENT_MAGIC = 'DLSEGMT1';
const PLAIN_MAGIC = Buffer.from('DLSEG001', 'ascii');
const HEAD_BYTES = PLAIN_MAGIC.length + 12;
export const CHUNK_ID_BYTES = 32;
export const SEGMENT_ID_BYTES = 32;
/** A segment of 16,384 distinct units is ~600 KiB; 4 MiB units of a tiny unit size still fit. */
export const SEGMENT_MAX_BYTES = 64 * 1024 * 1024;
/** Bytes of the keyed digest of a segment's used map kept in a point's segment list. */
export const USED_DIGEST_BYTES = 16;

/** One segment decoded: its units' used (and, in a checkpoint, settled) bits and the chunk each unit holds. */
export interface Segment {
  unitCount: number;
  /** Bit u set: unit u of the segment is used (LSB first). */
  used: Uint8Array;
  /** Checkpoints only: bit u set, unit u is settled (read and stored, or known zero). */
  done: Uint8Array | null;
  /** The segment's distinct chunk ids, 32 bytes each, back to back. */
  chunkIds: Buffer;
  /** Per unit: 0 = zero bytes (or unused), k = the k-th chunk id. */
  units: Uint32Array;
}

export function bitmapBytes(unitCount: number): number {
  return Math.ceil(unitCount / 8);
}

export function bit(bitmap: Uint8Array, unit: number): boolean {
  return ((bitmap[unit >>> 3]! >>> (unit & 7)) & 1) === 1;
}

/** The chunk id unit `unit` of the segment holds, or null for zeros (a view into the segment). */
export function chunkOf(segment: Segment, unit: number): Buffer | null {
  const k = segment.units[unit]!;
  return k === 0 ? null : segment.chunkIds.subarray((k - 1) * CHUNK_ID_BYTES, k * CHUNK_ID_BYTES);
}

export function chunkCount(segment: Segment): number {
  return segment.chunkIds.length / CHUNK_ID_BYTES;
}

/**
 * Plaintext: `DLSEG001 | unitCount u32le | flags u32le (bit 0: a done map follows) | chunkCount u32le | used map |
 * done map | chunk ids | unit refs (u32le each)`. No position on the disk: equal runs anywhere share one object.
 */
export function encodeSegment(segment: Segment): Buffer {
  const maps = bitmapBytes(segment.unitCount);
  const count = chunkCount(segment);
  const out = Buffer.allocUnsafe(
    HEAD_BYTES + maps * (segment.done ? 2 : 1) + segment.chunkIds.length + segment.unitCount * 4,
  );
  let at = PLAIN_MAGIC.copy(out, 0);
  at = out.writeUInt32LE(segment.unitCount, at);
  at = out.writeUInt32LE(segment.done ? 1 : 0, at);
  at = out.writeUInt32LE(count, at);
  out.set(segment.used.subarray(0, maps), at);
  at += maps;
  if (segment.done) {
    out.set(segment.done.subarray(0, maps), at);
    at += maps;
  }
  at += segment.chunkIds.copy(out, at);
  out.set(new Uint8Array(segment.units.buffer, segment.units.byteOffset, segment.unitCount * 4), at);
  return out;
}

export function decodeSegment(plaintext: Buffer, what: string): Segment {
  const damaged = (why: string) => new Error(`${what} is damaged: ${why}`);
  if (plaintext.length < HEAD_BYTES || !plaintext.subarray(0, PLAIN_MAGIC.length).equals(PLAIN_MAGIC))
    throw damaged('unknown segment layout');
  let at = PLAIN_MAGIC.length;
  const unitCount = plaintext.readUInt32LE(at);
  const flags = plaintext.readUInt32LE(at + 4);
  const count = plaintext.readUInt32LE(at + 8);
  at += 12;
  const maps = bitmapBytes(unitCount);
  const hasDone = (flags & 1) === 1;
  if (plaintext.length !== at + maps * (hasDone ? 2 : 1) + count * CHUNK_ID_BYTES + unitCount * 4)
    throw damaged('its maps have the wrong length');
  const used = new Uint8Array(plaintext.subarray(at, at + maps));
  at += maps;
  let done: Uint8Array | null = null;
  if (hasDone) {
    done = new Uint8Array(plaintext.subarray(at, at + maps));
    at += maps;
  }
  const chunkIds = Buffer.from(plaintext.subarray(at, at + count * CHUNK_ID_BYTES));
  at += count * CHUNK_ID_BYTES;
  const units = new Uint32Array(unitCount);
  Buffer.from(units.buffer).set(plaintext.subarray(at));
  for (const k of units) if (k > count) throw damaged(`its unit map names chunk ${k} of ${count}`);
  return { unitCount, used, done, chunkIds, units };
}

/** A segment's id: the keyed hash of its plaintext (equal content, equal id; nothing learnt without the key). */
export function segmentId(idKey: Buffer, plaintext: Buffer): Buffer {
  return createHmac('sha256', idKey).update('diskline segment\0').update(plaintext).digest();
}

/**
 * The keyed digest of a segment's used map: a writer compares its own with its parent's, and reuses the parent's
 * segment unread when they are equal and no changed block falls in it.
 */
export function usedDigest(idKey: Buffer, used: Uint8Array, unitCount: number): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32LE(unitCount);
  return createHmac('sha256', idKey)
    .update('diskline used\0')
    .update(length)
    .update(used.subarray(0, bitmapBytes(unitCount)))
    .digest()
    .subarray(0, USED_DIGEST_BYTES);
}

export function segmentName(id: Buffer): string {
  return `segments/${id.toString('hex')}`;
}

export function isSegmentName(name: string): boolean {
  return /^segments\/[0-9a-f]{64}$/.test(name);
}

/** A segment being built: units added in any order, chunk ids deduplicated within it. */
export class SegmentBuilder {
  readonly unitCount: number;
  readonly used: Uint8Array;
  readonly done: Uint8Array;
  readonly units: Uint32Array;
  readonly #ids: Buffer[] = [];
  readonly #slots = new Map<string, number>();

  constructor(unitCount: number, used: Uint8Array) {
    this.unitCount = unitCount;
    this.used = used;
    this.done = new Uint8Array(bitmapBytes(unitCount));
    this.units = new Uint32Array(unitCount);
  }

  /** Records unit `unit` as holding `id` (null: zeros) and settled. */
  set(unit: number, id: Buffer | null): void {
    this.units[unit] = id === null ? 0 : this.#slot(id);
    this.done[unit >>> 3]! |= 1 << (unit & 7);
  }

  isDone(unit: number): boolean {
    return bit(this.done, unit);
  }

  #slot(id: Buffer): number {
    const key = id.toString('latin1');
    let slot = this.#slots.get(key);
    if (slot === undefined) {
      this.#ids.push(Buffer.from(id));
      slot = this.#ids.length;
      this.#slots.set(key, slot);
    }
    return slot;
  }

  /**
   * The segment as it stands; with `partial`, its done map too (a checkpoint's open segment). Canonical: chunk
   * ids are numbered in the order units first name them, whatever order the units arrived in, so equal content
   * makes equal bytes and one id (only ids some unit still names: a unit settled twice names the last).
   */
  build(partial: boolean): Segment {
    const renumber = new Uint32Array(this.#ids.length + 1);
    const kept: Buffer[] = [];
    const units = new Uint32Array(this.unitCount);
    for (let u = 0; u < this.unitCount; u++) {
      const k = this.units[u]!;
      if (k === 0) continue;
      if (renumber[k] === 0) {
        kept.push(this.#ids[k - 1]!);
        renumber[k] = kept.length;
      }
      units[u] = renumber[k]!;
    }
    return {
      unitCount: this.unitCount,
      used: this.used.slice(),
      done: partial ? this.done.slice() : null,
      chunkIds: Buffer.concat(kept),
      units,
    };
  }
}
