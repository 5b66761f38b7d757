// Prune: forgets the restore points a retention policy does not keep and deletes the packs nothing references
// any more, in two phases that hold the writer lock only for short metadata steps, so backups keep running.
// The protocol (condemn, rescue, delete) and why an interrupted prune leaves a valid repository are in
// docs/repository-format.md, "Prune".
import type { Retention } from '../../protocol/model.ts';
import { decodeIndexEntries, INDEX_MAGIC, type IndexEntry, idKey } from './chunk-index.ts';
import { DamagedRepositoryError, RepositoryError } from './errors.ts';
import { removeLeftovers } from './leftovers.ts';
import { type WriteLimits, writeLimits } from './limits.ts';
import { runningBackups, withWriterLock } from './locks.ts';
import type { Manifest } from './manifest.ts';
import { packFileName } from './pack.ts';
import { manifestName, newId, type PruneRecord, type Repository } from './repository.ts';
import { applyRetention, policyIsEmpty } from './retention.ts';

export interface PruneOptions {
  dryRun: boolean;
  /** Called between steps (tests use it to interrupt a prune at a chosen moment). */
  onStep?: (step: string) => void | Promise<void>;
  /** Smaller write limits (tests), for the index files prune rewrites. */
  limits?: Partial<WriteLimits>;
}

export interface PruneReport {
  dryRun: boolean;
  kept: { id: string; reasons: string[] }[];
  forgotten: string[];
  /** Packs found unreferenced by this run. */
  condemnedPacks: number;
  deletedPacks: number;
  freedBytes: number;
  /** Prune records left for a later prune because backups that may use them are still running. */
  waitingRecords: number;
  /** Temp files left by writers that died. */
  deletedTemps: number;
}

async function allManifests(repo: Repository): Promise<Manifest[]> {
  const manifests: Manifest[] = [];
  for (const id of await repo.pointIds()) {
    try {
      manifests.push(await repo.loadManifest(id));
    } catch (error) {
      if (error instanceof DamagedRepositoryError) {
        throw new RepositoryError(
          `prune stopped before changing anything: ${error.message}. Without it prune cannot know which chunks are in use; run 'diskline verify' and remove the damaged point first`,
          'damage',
        );
      }
      throw error;
    }
  }
  return manifests;
}

/** Every entry of every index file, condemned packs included. */
async function rawIndex(repo: Repository): Promise<{ files: string[]; entries: Map<string, IndexEntry> }> {
  const files = await repo.indexFiles();
  const entries = new Map<string, IndexEntry>();
  for (const name of files) {
    const plaintext = await repo.readSealed(name, INDEX_MAGIC, `index file ${name}`);
    for (const [key, entry] of decodeIndexEntries(plaintext)) entries.set(key, entry);
  }
  return { files, entries };
}

export async function pruneRepository(
  repo: Repository,
  policy: Retention,
  options: PruneOptions,
): Promise<PruneReport> {
  if (policyIsEmpty(policy)) {
    throw new RepositoryError(
      'prune needs a retention policy (--keep-last, --keep-hourly, …): without one it would forget every point',
      'usage',
    );
  }
  const step = async (name: string) => options.onStep?.(name);
  const limits = writeLimits(options.limits);
  const report: PruneReport = {
    dryRun: options.dryRun,
    kept: [],
    forgotten: [],
    condemnedPacks: 0,
    deletedPacks: 0,
    freedBytes: 0,
    waitingRecords: 0,
    deletedTemps: 0,
  };

  // Phase 1, under the lock: forget points, condemn packs nothing references.
  await withWriterLock(repo.backend, 'prune: forget points', async () => {
    // Prune only the repository it opened; each phase starts by checking that it still is where it was named.
    await repo.ensureHeld();
    const manifests = await allManifests(repo);
    const running = new Set((await runningBackups(repo.backend)).map((r) => r.pointId));
    const complete = manifests.filter((m) => m.complete);
    const keep = applyRetention(complete, policy);
    const forget: Manifest[] = complete.filter((m) => !keep.has(m.id));
    // A checkpoint nobody is resuming, older than a complete point of its source, is no longer useful.
    for (const checkpoint of manifests.filter((m) => !m.complete && !running.has(m.id))) {
      const superseded = complete.some(
        (m) => m.source.path === checkpoint.source.path && m.time > checkpoint.time && keep.has(m.id),
      );
      if (superseded) forget.push(checkpoint);
    }
    report.kept = [...keep].map(([id, reasons]) => ({ id, reasons }));
    report.forgotten = forget.map((m) => m.id);
    const remaining = manifests.filter((m) => !forget.includes(m));
    const referenced = new Set<string>();
    for (const manifest of remaining) for (const id of manifest.chunkIds) referenced.add(idKey(id));
    const index = await repo.loadIndex(true);
    const packsInUse = new Set<string>();
    for (const [key, entry] of index.entries) if (referenced.has(key)) packsInUse.add(entry.pack);
    const unreferenced = [...index.packs()].filter((pack) => !packsInUse.has(pack));
    report.condemnedPacks = unreferenced.length;
    if (options.dryRun) return;
    for (const manifest of forget) {
      await repo.backend.delete(manifestName(manifest.id));
      await step('forgot a point');
    }
    if (unreferenced.length > 0) {
      const time = new Date().toISOString();
      await repo.writePruneRecord({
        name: `prune/${time.replace(/[-:.]/g, '')}-${newId()}`,
        time,
        packs: unreferenced,
        phase: 'condemned',
      });
      await step('condemned packs');
    }
  });
  if (options.dryRun) return report;

  // Phase 2, per record: once no backup older than the record runs, drop its packs from the index, then delete them.
  for (const initial of await repo.pruneRecords()) {
    const record = await withWriterLock(
      repo.backend,
      'prune: retire index entries',
      async (): Promise<PruneRecord | null> => {
        await repo.ensureHeld();
        const current = (await repo.pruneRecords()).find((r) => r.name === initial.name);
        if (!current) return null;
        let deleting = current;
        if (current.phase === 'condemned') {
          const blockers = (await runningBackups(repo.backend)).filter(
            (b) => Date.parse(b.time) <= Date.parse(current.time),
          );
          if (blockers.length > 0) return null;
          deleting = { ...current, phase: 'deleting' };
          await repo.writePruneRecord(deleting);
          await step('record marked deleting');
        }
        // Also when resuming a 'deleting' record: a killed prune may have stopped before the index was rewritten.
        const doomed = new Set(deleting.packs);
        const { files, entries } = await rawIndex(repo);
        const live: [string, IndexEntry][] = [];
        for (const pair of entries) if (!doomed.has(pair[1].pack)) live.push(pair);
        if (live.length < entries.size) {
          await repo.writeIndexFiles(live, limits.entriesPerIndexFile);
          await step('index rewritten');
          for (const name of files) {
            await repo.backend.delete(name);
            await step('old index file deleted');
          }
        }
        return deleting;
      },
    );
    if (!record) {
      report.waitingRecords += 1;
      continue;
    }
    for (const pack of record.packs) {
      const name = packFileName(pack);
      report.freedBytes += (await repo.backend.size(name)) ?? 0;
      await repo.backend.delete(name);
      report.deletedPacks += 1;
      await step('pack deleted');
    }
    await repo.backend.delete(record.name);
    await step('record deleted');
  }

  // Packs in no index file and no record: left by killed backups. Only safe when no backup runs at all. The
  // listing comes first: a backup registering after the check writes only packs this listing cannot hold.
  await withWriterLock(repo.backend, 'prune: orphan packs', async () => {
    await repo.ensureHeld();
    const removed = await removeLeftovers(repo, { onPackDeleted: () => step('orphan pack deleted') });
    if (!removed) return;
    report.freedBytes += removed.bytes;
    report.deletedPacks += removed.packs;
    report.deletedTemps += removed.temps;
  });
  await repo.loadIndex(true);
  await repo.ensureHeld();
  return report;
}
