// Prune: forgets the restore points a retention policy does not keep and deletes the packs nothing references
// any more, in two phases that hold the writer lock only for short metadata steps, so backups keep running.
// The protocol (condemn, rescue, delete) and why an interrupted prune leaves a valid repository are in
// docs/repository-format.md, "Prune".
import type { Retention } from '../../protocol/model.ts';
import { decodeIndexEntries, INDEX_MAGIC, type IndexEntry, idKey } from './chunk-index.ts';
import { DamagedRepositoryError, RepositoryError } from './errors.ts';
import { removeLeftovers } from './leftovers.ts';
import { type WriteLimits, writeLimits } from './limits.ts';
import {
  pointsBeingRead,
  registrationTime,
  runningBackups,
  SEGMENT_DELETION,
  type WriterLease,
  withWriterLock,
} from './locks.ts';
import type { Manifest } from './manifest.ts';
import { packFileName } from './pack.ts';
import { manifestName, newId, type PruneRecord, type Repository } from './repository.ts';
import { applyRetention, policyIsEmpty } from './retention.ts';
import { isSegmentName } from './segment.ts';

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
  /** Map segments no point names any more. */
  deletedSegments: number;
  /** Condemned packs kept after all: a backup that ran while they were condemned uses them. */
  rescuedPacks: number;
  /** Points the policy would forget that the store retains (Object Lock): kept, and until when. */
  retained: { id: string; until: string }[];
  /** Packs removed from the repository whose bytes the store keeps under retention, and until when (ms). */
  retainedPacks: number;
  retainedBytes: number;
  retainedPacksUntil: number | null;
}

/** Last-modified times of object stores have whole seconds. */
const STORAGE_CLOCK_GRANULARITY_MS = 2000;

/** The retention policy applied to each source apart: one machine's points never push out another's. */
function retainPerSource(complete: readonly Manifest[], policy: Retention): Map<string, string[]> {
  const bySource = new Map<string, Manifest[]>();
  for (const manifest of complete) {
    const { path, serial, size } = manifest.source;
    const key = JSON.stringify([path, serial, size]);
    const group = bySource.get(key);
    if (group) group.push(manifest);
    else bySource.set(key, [manifest]);
  }
  const keep = new Map<string, string[]>();
  for (const group of bySource.values())
    for (const [id, reasons] of applyRetention(group, policy)) keep.set(id, reasons);
  return keep;
}

/**
 * The packs among `doomed` that a point now in the repository needs: those holding a chunk it names that no
 * other pack (outside `doomed`) holds.
 */
async function packsStillUsed(
  repo: Repository,
  doomed: ReadonlySet<string>,
  lease: WriterLease,
): Promise<Set<string>> {
  const referenced = (await referencedBy(repo, await allManifests(repo), lease)).chunks;
  const elsewhere = new Set<string>();
  const holders = new Map<string, string[]>();
  for (const name of await repo.indexFiles()) {
    await lease.keep();
    const plaintext = await repo.readSealed(name, INDEX_MAGIC, `index file ${name}`);
    for (const [key, entry] of decodeIndexEntries(plaintext)) {
      if (!referenced.has(key)) continue;
      if (!doomed.has(entry.pack)) elsewhere.add(key);
      else holders.set(key, [...(holders.get(key) ?? []), entry.pack]);
    }
  }
  const used = new Set<string>();
  for (const [key, packs] of holders) if (!elsewhere.has(key)) for (const pack of packs) used.add(pack);
  return used;
}

/** Stops prune before it changes anything when a point cannot be read: its references are unknown. */
function unreadable(error: unknown): never {
  if (error instanceof DamagedRepositoryError) {
    throw new RepositoryError(
      `prune stopped before changing anything: ${error.message}. Without it prune cannot know which chunks are in use; run 'diskline verify' and remove the damaged point first`,
      'damage',
    );
  }
  throw error;
}

/**
 * The chunks `manifests` name, reading each distinct segment once (points share most of theirs), and the
 * segments they name.
 */
async function referencedBy(
  repo: Repository,
  manifests: readonly Manifest[],
  lease: WriterLease,
): Promise<{ chunks: Set<string>; segments: Set<string> }> {
  const chunks = new Set<string>();
  const segments = new Set<string>();
  for (const manifest of manifests) {
    const map = await repo.openMap(manifest).catch(unreadable);
    for (let index = 0; index < map.segmentCount; index++) {
      const id = map.list.id(index);
      if (id) {
        const key = id.toString('hex');
        if (segments.has(key)) continue;
        segments.add(key);
      }
      await lease.keep();
      const segment = await map.segment(index).catch(unreadable);
      for (let at = 0; at < segment.chunkIds.length; at += 32)
        chunks.add(idKey(segment.chunkIds.subarray(at, at + 32)));
    }
  }
  return { chunks, segments };
}

async function allManifests(repo: Repository): Promise<Manifest[]> {
  const manifests: Manifest[] = [];
  for (const id of await repo.pointIds()) {
    manifests.push(await repo.loadManifest(id).catch(unreadable));
  }
  return manifests;
}

/**
 * Every entry of every index file, condemned packs included, once per chunk and pack: a chunk two backups
 * stored at once is in two packs, and both entries count (keeping only one could drop the live one).
 */
async function rawIndex(repo: Repository): Promise<{ files: string[]; entries: [string, IndexEntry][] }> {
  const files = await repo.indexFiles();
  const entries = new Map<string, [string, IndexEntry]>();
  for (const name of files) {
    const plaintext = await repo.readSealed(name, INDEX_MAGIC, `index file ${name}`);
    for (const [key, entry] of decodeIndexEntries(plaintext))
      entries.set(`${key}:${entry.pack}`, [key, entry]);
  }
  return { files, entries: [...entries.values()] };
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
    deletedSegments: 0,
    rescuedPacks: 0,
    retained: [],
    retainedPacks: 0,
    retainedBytes: 0,
    retainedPacksUntil: null,
  };

  // Phase 1, under the lock: forget points, condemn packs nothing references.
  await withWriterLock(repo.backend, 'prune: forget points', async (lease) => {
    // Prune only the repository it opened; each phase starts by checking that it still is where it was named.
    await repo.ensureHeld();
    const manifests = await allManifests(repo);
    const running = new Set((await runningBackups(repo.backend)).map((r) => r.pointId));
    const complete = manifests.filter((m) => m.complete);
    const keep = retainPerSource(complete, policy);
    const forget: Manifest[] = complete.filter((m) => !keep.has(m.id));
    // A checkpoint nobody is resuming, older than a complete point of its source, is no longer useful.
    for (const checkpoint of manifests.filter((m) => !m.complete && !running.has(m.id))) {
      const superseded = complete.some(
        (m) => m.source.path === checkpoint.source.path && m.time > checkpoint.time && keep.has(m.id),
      );
      if (superseded) forget.push(checkpoint);
    }
    // A point a restore, mount or copy is reading right now is kept: what the reader needs stays.
    const beingRead = await pointsBeingRead(repo.backend);
    for (const manifest of [...forget]) {
      if (!beingRead.has(manifest.id)) continue;
      forget.splice(forget.indexOf(manifest), 1);
      keep.set(manifest.id, [...(keep.get(manifest.id) ?? []), 'being read (a restore, mount or copy)']);
    }
    // Object Lock: a point whose manifest the store retains is kept (deleting its name would hide a point the
    // store still guards); prune says until when.
    if (repo.backend.retainedUntil) {
      for (const manifest of [...forget]) {
        const until = await repo.backend.retainedUntil(manifestName(manifest.id));
        if (until === null) continue;
        forget.splice(forget.indexOf(manifest), 1);
        const when = new Date(until).toISOString();
        keep.set(manifest.id, [...(keep.get(manifest.id) ?? []), `retained until ${when}`]);
        report.retained.push({ id: manifest.id, until: when });
      }
    }
    report.kept = [...keep].map(([id, reasons]) => ({ id, reasons }));
    report.forgotten = forget.map((m) => m.id);
    const remaining = manifests.filter((m) => !forget.includes(m));
    const referenced = (await referencedBy(repo, remaining, lease)).chunks;
    const index = await repo.loadIndex(true);
    // Every pack holding a referenced chunk is in use, not just the one the index would read it from.
    const packsInUse = new Set<string>();
    for (const [key, entry] of (await rawIndex(repo)).entries)
      if (referenced.has(key)) packsInUse.add(entry.pack);
    const unreferenced = [...index.packs()].filter((pack) => !packsInUse.has(pack));
    report.condemnedPacks = unreferenced.length;
    if (options.dryRun) return;
    for (const manifest of forget) {
      await lease.keep();
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
      async (lease): Promise<PruneRecord | null> => {
        await repo.ensureHeld();
        const current = (await repo.pruneRecords()).find((r) => r.name === initial.name);
        if (!current) return null;
        let deleting = current;
        if (current.phase === 'condemned') {
          // By the storage's clock on both sides, so machines whose clocks disagree agree on what came first;
          // a registration within the clock's granularity of the record counts as older.
          const recordTime = (await repo.backend.modifiedAt(current.name)) ?? Date.parse(current.time);
          const blockers = (await runningBackups(repo.backend)).filter(
            (b) => registrationTime(b) <= recordTime + STORAGE_CLOCK_GRANULARITY_MS,
          );
          if (blockers.length > 0) return null;
          // Every backup that may have deduplicated against these packs has ended: rescue those its points
          // (complete or checkpoints) use, then the rest may go.
          const rescued = await packsStillUsed(repo, new Set(current.packs), lease);
          deleting = {
            ...current,
            packs: current.packs.filter((pack) => !rescued.has(pack)),
            phase: 'deleting',
          };
          report.rescuedPacks += rescued.size;
          await repo.writePruneRecord(deleting);
          await step('record marked deleting');
        }
        // Also when resuming a 'deleting' record: a killed prune may have stopped before the index was rewritten.
        const doomed = new Set(deleting.packs);
        const { files, entries } = await rawIndex(repo);
        const live: [string, IndexEntry][] = [];
        for (const pair of entries) if (!doomed.has(pair[1].pack)) live.push(pair);
        if (live.length < entries.length) {
          await repo.writeIndexFiles(live, limits.entriesPerIndexFile);
          await step('index rewritten');
          for (const name of files) {
            await lease.keep();
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
      const bytes = (await repo.backend.size(name)) ?? 0;
      // Under Object Lock the name goes but the store keeps the bytes until the retention ends (a lifecycle
      // rule for noncurrent versions then removes them): counted apart, not as freed.
      const until = (await repo.backend.retainedUntil?.(name)) ?? null;
      if (until === null) report.freedBytes += bytes;
      else {
        report.retainedPacks += 1;
        report.retainedBytes += bytes;
        report.retainedPacksUntil = Math.max(report.retainedPacksUntil ?? 0, until);
      }
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
  report.deletedSegments = await removeUnreferencedSegments(repo, step);
  await repo.loadIndex(true);
  await repo.ensureHeld();
  return report;
}

/**
 * Segments no point names: left by forgotten points and by killed backups. Deleted only when no backup is
 * registered: a running backup may name segments of a point forgotten after it started, names a segment it finds
 * stored without writing it, and writes segments before the checkpoint naming them. The lock is held under its
 * own purpose from before the check to the last delete: a backup registering after the check waits for it
 * (point-writer.ts) before it takes any segment as stored, and reuses only segments of points that remain.
 */
async function removeUnreferencedSegments(
  repo: Repository,
  step: (name: string) => Promise<void>,
): Promise<number> {
  return withWriterLock(repo.backend, SEGMENT_DELETION, async (lease) => {
    await repo.ensureHeld();
    const names = await repo.backend.list('segments/');
    if (names.length === 0 || (await runningBackups(repo.backend)).length > 0) return 0;
    const named = new Set<string>();
    for (const id of await repo.pointIds()) {
      await lease.keep();
      const map = await repo.openMap(id).catch(unreadable);
      for (const key of map.list.distinctIds()) named.add(key);
    }
    let deleted = 0;
    for (const name of names) {
      if (!isSegmentName(name) || named.has(name.slice('segments/'.length))) continue;
      await lease.keep();
      await repo.backend.delete(name);
      deleted += 1;
      await step('segment deleted');
    }
    if (deleted > 0) repo.forgetStoredSegments();
    return deleted;
  });
}
