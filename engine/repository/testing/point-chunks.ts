// The distinct chunk ids a point names, collected from its segments (tests look up where chunks are stored).
import type { Manifest } from '../manifest.ts';
import type { Repository } from '../repository.ts';

export async function chunkIdsOf(repo: Repository, manifest: Manifest | string): Promise<Buffer[]> {
  const map = await repo.openMap(manifest);
  const seen = new Set<string>();
  const ids: Buffer[] = [];
  for await (const id of map.chunkIds()) {
    const key = id.toString('hex');
    if (seen.has(key)) continue;
    seen.add(key);
    ids.push(Buffer.from(id));
  }
  return ids;
}

/** The point's used map over the whole disk (tests with small images check units against it). */
export async function usedMapOf(repo: Repository, manifest: Manifest | string): Promise<Uint8Array> {
  const map = await repo.openMap(manifest);
  const used = new Uint8Array(Math.ceil(map.manifest.unitCount / 8));
  for await (const { firstUnit, segment } of map.segments())
    for (let u = 0; u < segment.unitCount; u++)
      if ((segment.used[u >>> 3]! >>> (u & 7)) & 1)
        used[(firstUnit + u) >>> 3]! |= 1 << ((firstUnit + u) & 7);
  return used;
}
