// The layout a restore point holds, read from the point itself (its partition table and each file system's
// allocation records, decoded from the repository on demand): what the fit planner plans from, and the file
// systems' identities a new-identity restore replaces.
import type { BlockReader } from '../device/types.ts';
import { type DiskLayout, inspectDisk } from '../layout/inspect.ts';
import type { SourceLayout } from '../partition/fit-layout.ts';
import type { PointReader } from '../repository/repository.ts';

/** A restore point seen as a read-only disk. */
export function pointAsReader(point: PointReader, name: string): BlockReader {
  return {
    path: name,
    size: point.manifest.source.size,
    logicalSectorSize: 512,
    read: (offset, length) =>
      point.read(offset, Math.max(0, Math.min(length, point.manifest.source.size - offset))),
    close: async () => undefined,
  };
}

export async function pointLayout(point: PointReader): Promise<DiskLayout> {
  // No cross-check: nothing is copied on the strength of this map; it only sizes the plan.
  return inspectDisk(pointAsReader(point, `restore point ${point.manifest.id}`), { crossCheck: false });
}

export function sourceLayoutOf(layout: DiskLayout): SourceLayout {
  return {
    table: layout.partitionTable,
    sectorSize: layout.sectorSize,
    size: layout.size,
    partitions: layout.partitions.map((p) => ({
      index: p.index,
      start: p.start,
      size: p.size,
      type: p.type,
      filesystem: p.filesystem,
      usedBytes: p.usedBytes,
    })),
  };
}
