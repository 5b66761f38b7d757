// A point as a format 3 Diskline stored it: one sealed manifest holding the whole map. Tests and the benchmark
// turn segmented points into these to prove older repositories still read.
import type { LegacyManifest } from '../manifest.ts';
import type { Repository } from '../repository.ts';
import { bit, chunkOf } from '../segment.ts';

/** The point's map gathered into the format 3 layout (whole-disk arrays: small disks only). */
export async function legacyManifestOf(repo: Repository, pointId: string): Promise<LegacyManifest> {
  const map = await repo.openMap(pointId);
  const { partialSegments, ...head } = map.manifest;
  const unitCount = head.unitCount;
  const used = new Uint8Array(Math.ceil(unitCount / 8));
  const done = partialSegments ? new Uint8Array(used.length) : undefined;
  const units = new Uint32Array(unitCount);
  const chunkIds: Buffer[] = [];
  const slots = new Map<string, number>();
  for await (const { firstUnit, segment } of map.segments()) {
    for (let u = 0; u < segment.unitCount; u++) {
      const unit = firstUnit + u;
      if (bit(segment.used, u)) used[unit >>> 3]! |= 1 << (unit & 7);
      if (done && (segment.done === null || bit(segment.done, u))) done[unit >>> 3]! |= 1 << (unit & 7);
      const id = chunkOf(segment, u);
      if (!id) continue;
      const key = id.toString('hex');
      let slot = slots.get(key);
      if (slot === undefined) {
        chunkIds.push(Buffer.from(id));
        slot = chunkIds.length;
        slots.set(key, slot);
      }
      units[unit] = slot;
    }
  }
  return { ...head, format: 1, used, ...(done ? { done } : {}), chunkIds, units };
}
