// What writers that were killed leave in a repository: packs that no index file and no prune record names (a
// backup killed before its next checkpoint) and temp files older than any live writer's. Prune removes them, and
// so does a backup before it starts when it finds any, so a retry after a crash on a full disk needs no prune.
// Only while no other backup runs: the packs are listed first, so a backup registering after the check writes
// only packs this listing cannot hold. The caller holds the writer lock.
import { decodeIndexEntries, INDEX_MAGIC } from './chunk-index.ts';
import { runningBackups } from './locks.ts';
import type { Repository } from './repository.ts';

/** A temp file this old belongs to no live writer (puts take seconds); like a stale writer lock. */
export const STALE_TEMP_MS = 10 * 60 * 1000;

export interface LeftoversRemoved {
  packs: number;
  temps: number;
  bytes: number;
}

export interface LeftoverOptions {
  /** The caller's own backup registration, which does not count as another backup running. */
  ownBackup?: string;
  /** The pack files as listed before (the listing must come before the check for running backups). */
  packNames?: string[];
  onPackDeleted?: () => void | Promise<void>;
}

/** Removes leftovers; null when another backup runs (nothing is removed then). */
export async function removeLeftovers(
  repo: Repository,
  options: LeftoverOptions = {},
): Promise<LeftoversRemoved | null> {
  const packNames = options.packNames ?? (await repo.backend.list('packs/'));
  const tempNames = await repo.backend.list('tmp/');
  const others = (await runningBackups(repo.backend)).filter((b) => b.pointId !== options.ownBackup);
  if (others.length > 0) return null;
  const removed: LeftoversRemoved = { packs: 0, temps: 0, bytes: 0 };
  for (const name of tempNames) {
    const modified = await repo.backend.modifiedAt(name);
    if (modified === null || Date.now() - modified < STALE_TEMP_MS) continue;
    removed.bytes += (await repo.backend.size(name)) ?? 0;
    await repo.backend.delete(name);
    removed.temps += 1;
  }
  // Every pack any index file names, entry by entry (a chunk stored twice names two packs; both are kept).
  const known = new Set<string>();
  for (const name of await repo.indexFiles()) {
    const plaintext = await repo.readSealed(name, INDEX_MAGIC, `index file ${name}`);
    for (const [, entry] of decodeIndexEntries(plaintext)) known.add(entry.pack);
  }
  for (const record of await repo.pruneRecords()) for (const pack of record.packs) known.add(pack);
  for (const name of packNames) {
    const pack = name.slice(name.lastIndexOf('/') + 1);
    if (known.has(pack)) continue;
    removed.bytes += (await repo.backend.size(name)) ?? 0;
    await repo.backend.delete(name);
    removed.packs += 1;
    await options.onPackDeleted?.();
  }
  return removed;
}

/**
 * Whether the repository may hold leftovers: a temp file, or a pack file the loaded index and the prune records
 * do not name. Cheap (a listing); the careful check is removeLeftovers.
 */
export function mayHoldLeftovers(
  packNames: readonly string[],
  tempNames: readonly string[],
  knownPacks: ReadonlySet<string>,
): boolean {
  if (tempNames.length > 0) return true;
  return packNames.some((name) => !knownPacks.has(name.slice(name.lastIndexOf('/') + 1)));
}
