// Which byte ranges differ between two points, by chunk id and without reading any data: segments both points
// share (same id) are skipped unread, and only the segments that differ are read, a pair at a time.
import type { ByteRange } from '../device/types.ts';
import type { PointMap } from './point-map.ts';
import { sameUnit } from './point-map.ts';

export interface PointDiff {
  ranges: ByteRange[];
  changedBytes: number;
  /** Segment pairs read (those whose ids differ); the rest were equal by id. */
  segmentsRead: number;
}

export async function diffPoints(a: PointMap, b: PointMap): Promise<PointDiff> {
  if (a.manifest.unitSize !== b.manifest.unitSize) throw new Error('the two points use different unit sizes');
  const unitSize = a.manifest.unitSize;
  const size = Math.max(a.manifest.source.size, b.manifest.source.size);
  const unitCount = Math.max(a.manifest.unitCount, b.manifest.unitCount);
  const ranges: ByteRange[] = [];
  const mark = (unit: number) => {
    const start = unit * unitSize;
    const length = Math.min(size, start + unitSize) - start;
    const last = ranges[ranges.length - 1];
    if (last && last.start + last.length === start) last.length += length;
    else ranges.push({ start, length });
  };
  let segmentsRead = 0;
  // Points of one layout compare segment by segment; otherwise (another segment size) unit by unit.
  const per =
    a.unitsPerSegment === b.unitsPerSegment
      ? a.unitsPerSegment
      : Math.min(a.unitsPerSegment, b.unitsPerSegment);
  const segmentOf = async (map: PointMap, unit: number) => {
    const index = Math.floor(unit / map.unitsPerSegment);
    return index < map.segmentCount
      ? { segment: await map.segment(index), first: index * map.unitsPerSegment }
      : null;
  };
  for (let first = 0; first < unitCount; first += per) {
    const index = first / per;
    if (
      a.unitsPerSegment === b.unitsPerSegment &&
      index < a.segmentCount &&
      index < b.segmentCount &&
      a.list.sameAs(b.list, index)
    )
      continue;
    segmentsRead += 1;
    const x = await segmentOf(a, first);
    const y = await segmentOf(b, first);
    const end = Math.min(unitCount, first + per);
    for (let unit = first; unit < end; unit++) {
      if (!sameUnit(x?.segment ?? null, unit - (x?.first ?? 0), y?.segment ?? null, unit - (y?.first ?? 0)))
        mark(unit);
    }
  }
  return { ranges, changedBytes: ranges.reduce((sum, r) => sum + r.length, 0), segmentsRead };
}
