// A segmented point's file, `points/<id>`: a small sealed head (source, partitions, stats, consistency…) and a
// sealed segment list (per segment: its id and the digest of its used map). The head is read alone — by a range
// read of the file — so listing points never reads their lists, and no part grows with anything but the disk's
// segment count (48 bytes per GiB of disk). See docs/repository-format.md, "Points".
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { RepositoryKeys } from './keys.ts';
import type { Manifest } from './manifest.ts';
import { DamagedFileError, seal, unseal } from './sealed.ts';
import { SEGMENT_ID_BYTES, USED_DIGEST_BYTES } from './segment.ts';

export const POINT_MAGIC = 'DLPOINT2';
export const POINT_HEAD_MAGIC = 'DLPTHEAD';
export const POINT_LIST_MAGIC = 'DLPTSEGS';
/** magic (8) | sealed head length u32le */
export const POINT_PREFIX_BYTES = 12;
/** A head is a few KiB of JSON (partitions); a list 48 bytes per segment: 64 MiB is over a petabyte of disk. */
export const POINT_HEAD_MAX_BYTES = 16 * 1024 * 1024;
export const POINT_LIST_MAX_BYTES = 256 * 1024 * 1024;
/** Bytes per segment in a list. */
export const LIST_ENTRY_BYTES = SEGMENT_ID_BYTES + USED_DIGEST_BYTES;

/** A point's segment list: per segment its id (all zero in a checkpoint: nothing of it settled yet) and used digest. */
export class SegmentList {
  readonly bytes: Buffer;

  constructor(bytes: Buffer) {
    if (bytes.length % LIST_ENTRY_BYTES !== 0) throw new Error('a segment list has a partial entry');
    this.bytes = bytes;
  }

  static empty(segmentCount: number): SegmentList {
    return new SegmentList(Buffer.alloc(segmentCount * LIST_ENTRY_BYTES));
  }

  get length(): number {
    return this.bytes.length / LIST_ENTRY_BYTES;
  }

  /** The segment's id, or null when a checkpoint holds nothing of it yet. */
  id(segment: number): Buffer | null {
    const at = segment * LIST_ENTRY_BYTES;
    const id = this.bytes.subarray(at, at + SEGMENT_ID_BYTES);
    return id.some((byte) => byte !== 0) ? id : null;
  }

  usedDigest(segment: number): Buffer {
    const at = segment * LIST_ENTRY_BYTES + SEGMENT_ID_BYTES;
    return this.bytes.subarray(at, at + USED_DIGEST_BYTES);
  }

  set(segment: number, id: Buffer | null, usedDigest: Buffer): void {
    const at = segment * LIST_ENTRY_BYTES;
    if (id) id.copy(this.bytes, at, 0, SEGMENT_ID_BYTES);
    else this.bytes.fill(0, at, at + SEGMENT_ID_BYTES);
    usedDigest.copy(this.bytes, at + SEGMENT_ID_BYTES, 0, USED_DIGEST_BYTES);
  }

  /** Whether segment `segment` is the same object in both lists (its units and used map are equal). */
  sameAs(other: SegmentList, segment: number): boolean {
    const mine = this.id(segment);
    const theirs = other.id(segment);
    return mine !== null && theirs !== null && mine.equals(theirs);
  }

  /** The distinct segment ids, as hex. */
  distinctIds(): Set<string> {
    const ids = new Set<string>();
    for (let i = 0; i < this.length; i++) {
      const id = this.id(i);
      if (id) ids.add(id.toString('hex'));
    }
    return ids;
  }

  copy(): SegmentList {
    return new SegmentList(Buffer.from(this.bytes));
  }
}

function listDigest(keys: RepositoryKeys, list: Buffer): string {
  return createHmac('sha256', keys.idKey).update('diskline segment list\0').update(list).digest('hex');
}

/** The head as stored: the Manifest fields, the list's length and keyed digest (it binds the list to the head). */
interface StoredHead extends Manifest {
  segmentCount: number;
  listDigest: string;
}

/** The point file's parts, written in this order as one file. */
export function encodePointFile(
  keys: RepositoryKeys,
  boundName: string | null,
  manifest: Manifest,
  list: SegmentList,
): Buffer[] {
  const head: StoredHead = {
    ...manifest,
    format: 2,
    segmentCount: list.length,
    listDigest: listDigest(keys, list.bytes),
  };
  const sealedHead = seal(keys, POINT_HEAD_MAGIC, Buffer.from(JSON.stringify(head)), boundName);
  const prefix = Buffer.alloc(POINT_PREFIX_BYTES);
  prefix.write(POINT_MAGIC, 0, 'ascii');
  prefix.writeUInt32LE(sealedHead.length, 8);
  return [prefix, sealedHead, seal(keys, POINT_LIST_MAGIC, list.bytes, boundName)];
}

export function isPointFile(prefix: Buffer): boolean {
  return prefix.length >= POINT_PREFIX_BYTES && prefix.toString('ascii', 0, 8) === POINT_MAGIC;
}

/** The sealed head's length from the file's first bytes; throws (damage) when it cannot be. */
export function headLength(prefix: Buffer, fileSize: number, what: string): number {
  const length = prefix.readUInt32LE(8);
  if (length > POINT_HEAD_MAX_BYTES || POINT_PREFIX_BYTES + length > fileSize)
    throw new DamagedFileError(`${what} is damaged: its head is cut short`);
  return length;
}

export function decodePointHead(
  keys: RepositoryKeys,
  sealedHead: Buffer,
  boundName: string | null,
  what: string,
): StoredHead {
  const head = JSON.parse(
    unseal(keys, POINT_HEAD_MAGIC, sealedHead, what, boundName).toString('utf8'),
  ) as StoredHead;
  const integer = (value: unknown) => Number.isSafeInteger(value) && (value as number) >= 0;
  if (
    !integer(head.unitCount) ||
    !integer(head.unitSize) ||
    !integer(head.segmentCount) ||
    !integer(head.unitsPerSegment) ||
    head.unitsPerSegment === 0 ||
    head.segmentCount !== Math.ceil(head.unitCount / head.unitsPerSegment) ||
    typeof head.listDigest !== 'string'
  )
    throw new DamagedFileError(`${what} is damaged: its head's counts do not agree`);
  return head;
}

export function decodePointList(
  keys: RepositoryKeys,
  head: StoredHead,
  sealedList: Buffer,
  boundName: string | null,
  what: string,
): SegmentList {
  const bytes = unseal(keys, POINT_LIST_MAGIC, sealedList, what, boundName);
  const expected = Buffer.from(listDigest(keys, bytes), 'hex');
  const named = Buffer.from(head.listDigest, 'hex');
  if (
    bytes.length !== head.segmentCount * LIST_ENTRY_BYTES ||
    named.length !== expected.length ||
    !timingSafeEqual(expected, named)
  )
    throw new DamagedFileError(`${what} is damaged: its segment list is not the one its head names`);
  return new SegmentList(bytes);
}

/** The Manifest fields of a stored head (without the list's length and digest). */
export function manifestOf(head: StoredHead): Manifest {
  const { segmentCount: _count, listDigest: _digest, ...manifest } = head;
  return manifest;
}
