// A point's per-unit map, read a segment at a time: restore and incremental planning, diff, mount, prune and
// verify walk it segment by segment, so what they hold at once is a few segments, whatever the disk's size.
// A format 3 manifest (the whole map in one file) is served through the same interface, cut into segments.
import type { RepositoryKeys } from './keys.ts';
import type { LegacyManifest, Manifest } from './manifest.ts';
import { SegmentList } from './point-file.ts';
import {
  bit,
  bitmapBytes,
  chunkOf,
  encodeSegment,
  type Segment,
  SegmentBuilder,
  segmentId,
  usedDigest,
} from './segment.ts';

export class PointMap {
  readonly manifest: Manifest;
  readonly list: SegmentList;
  readonly #read: (segment: number) => Promise<Segment>;

  constructor(manifest: Manifest, list: SegmentList, read: (segment: number) => Promise<Segment>) {
    this.manifest = manifest;
    this.list = list;
    this.#read = read;
  }

  get segmentCount(): number {
    return this.list.length;
  }

  get unitsPerSegment(): number {
    return this.manifest.unitsPerSegment;
  }

  /** Units in segment `segment` (the last may hold fewer). */
  unitsIn(segment: number): number {
    return segmentUnits(this.manifest.unitCount, this.manifest.unitsPerSegment, segment);
  }

  /** Segment `segment` decoded; a checkpoint's segment of which nothing is settled reads as all unsettled. */
  segment(segment: number): Promise<Segment> {
    if (segment < 0 || segment >= this.segmentCount) throw new RangeError(`no segment ${segment}`);
    return this.#read(segment);
  }

  /** Every segment in disk order with the first unit it covers, read one at a time. */
  async *segments(): AsyncGenerator<{ index: number; firstUnit: number; segment: Segment }> {
    for (let index = 0; index < this.segmentCount; index++)
      yield { index, firstUnit: index * this.unitsPerSegment, segment: await this.segment(index) };
  }

  /** The chunk ids this point names, each distinct segment read once (ids may repeat across segments). */
  async *chunkIds(): AsyncGenerator<Buffer> {
    const seen = new Set<string>();
    for (let index = 0; index < this.segmentCount; index++) {
      const id = this.list.id(index);
      if (id) {
        const key = id.toString('hex');
        if (seen.has(key)) continue;
        seen.add(key);
      }
      const segment = await this.segment(index);
      for (let at = 0; at < segment.chunkIds.length; at += 32) yield segment.chunkIds.subarray(at, at + 32);
    }
  }
}

export function segmentUnits(unitCount: number, unitsPerSegment: number, segment: number): number {
  return Math.max(0, Math.min(unitsPerSegment, unitCount - segment * unitsPerSegment));
}

/** An all-unsettled segment of `unitCount` units (a checkpoint's segment not begun). */
export function unsettledSegment(unitCount: number): Segment {
  const maps = bitmapBytes(unitCount);
  return {
    unitCount,
    used: new Uint8Array(maps),
    done: new Uint8Array(maps),
    chunkIds: Buffer.alloc(0),
    units: new Uint32Array(unitCount),
  };
}

/** The segments of a format 3 manifest's map: `unitsPerSegment` units each, in memory (it was read whole). */
export function legacyPointMap(keys: RepositoryKeys, legacy: LegacyManifest): PointMap {
  const { used, chunkIds, units, done, ...rest } = legacy;
  const manifest: Manifest = rest;
  const per = legacy.unitsPerSegment;
  const count = Math.ceil(legacy.unitCount / per);
  const cut = (index: number): Segment => {
    const first = index * per;
    const length = segmentUnits(legacy.unitCount, per, index);
    const usedBits = new Uint8Array(bitmapBytes(length));
    for (let u = 0; u < length; u++) if (bit(used, first + u)) usedBits[u >>> 3]! |= 1 << (u & 7);
    const builder = new SegmentBuilder(length, usedBits);
    for (let u = 0; u < length; u++) {
      const k = units[first + u]!;
      builder.set(u, k === 0 ? null : chunkIds[k - 1]!);
    }
    const segment = builder.build(done !== undefined);
    if (done) {
      segment.done!.fill(0);
      for (let u = 0; u < length; u++) if (bit(done, first + u)) segment.done![u >>> 3]! |= 1 << (u & 7);
    }
    return segment;
  };
  const list = SegmentList.empty(count);
  for (let index = 0; index < count; index++) {
    const segment = cut(index);
    list.set(
      index,
      segmentId(keys.idKey, encodeSegment(segment)),
      usedDigest(keys.idKey, segment.used, segment.unitCount),
    );
  }
  return new PointMap(manifest, list, async (index) => cut(index));
}

/**
 * Whether two units read the same for a restore: both unused, or both used and holding the same chunk (or both
 * zero). A segment null or a unit past its end is unused.
 */
export function sameUnit(a: Segment | null, unitA: number, b: Segment | null, unitB: number): boolean {
  const usedA = a !== null && unitA < a.unitCount && bit(a.used, unitA);
  const usedB = b !== null && unitB < b.unitCount && bit(b.used, unitB);
  if (!usedA || !usedB) return usedA === usedB;
  const x = chunkOf(a!, unitA);
  const y = chunkOf(b!, unitB);
  return x === null ? y === null : y !== null && x.equals(y);
}
