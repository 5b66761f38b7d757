// Checks a repository: every index file and manifest opens, every chunk a point names is indexed and its pack
// is whole where the index says; with readData every chunk is decrypted, decompressed and its id recomputed.
// Reports each damaged point by id, with what is wrong, so the user knows which restore points to distrust.

import { UnsafeFileError } from '../backend/types.ts';
import {
  ChunkDamage,
  DamagedChunkError,
  DamagedGroupError,
  GROUP_HEADER_BYTES,
  groupHolds,
  MEMBER_BYTES,
} from './chunk-codec.ts';
import { decodeIndexEntries, INDEX_MAGIC, type IndexEntry, idKey } from './chunk-index.ts';
import { RepositoryError } from './errors.ts';
import type { Manifest } from './manifest.ts';
import {
  PACK_END_MAGIC,
  PACK_HEADER_BYTES,
  PACK_TRAILER_BYTES,
  packFileName,
  packHeaderProblem,
} from './pack.ts';
import type { PointMap } from './point-map.ts';
import type { Repository } from './repository.ts';
import type { Segment } from './segment.ts';

export interface VerifyReport {
  ok: boolean;
  pointsChecked: number;
  chunksChecked: number;
  bytesRead: number;
  /** Points that cannot be restored exactly, with the first problems found. */
  damagedPoints: { id: string; problems: string[] }[];
  /** Problems not tied to one point (an unreadable index file, a damaged pack no point uses). */
  problems: string[];
}

export interface VerifyOptions {
  readData: boolean;
  /**
   * With readData: only the packs this says (`--read-data-subset`); every structure check still runs. See
   * parseReadDataSubset.
   */
  readDataSubset?: ((pack: string) => boolean) | undefined;
  onProgress?: (progress: { doneChunks: number; totalChunks: number }) => void;
}

const MAX_PROBLEMS_PER_POINT = 10;

/**
 * `--read-data-subset`: `N/M` reads the packs of the N-th of M fixed parts (by pack id, so M runs with N = 1..M
 * read every pack once: a big remote repository checked a part a night); `P%` reads a random P% of the packs
 * (a different sample each run). Throws a RepositoryError of kind 'usage' saying the forms when the text is neither.
 */
export function parseReadDataSubset(text: string): (pack: string) => boolean {
  const part = /^(\d+)\/(\d+)$/.exec(text);
  if (part) {
    const n = Number(part[1]);
    const m = Number(part[2]);
    if (m >= 1 && n >= 1 && n <= m) return (pack) => Number.parseInt(pack.slice(0, 8), 16) % m === n - 1;
  }
  const percent = /^(\d+(?:\.\d+)?)%$/.exec(text);
  if (percent) {
    const share = Number(percent[1]) / 100;
    if (share > 0 && share <= 1) {
      const chosen = new Map<string, boolean>();
      return (pack) => {
        let pick = chosen.get(pack);
        if (pick === undefined) chosen.set(pack, (pick = Math.random() < share));
        return pick;
      };
    }
  }
  throw new RepositoryError(
    `--read-data-subset ${text}: expected N/M (the N-th of M parts, 1 <= N <= M) or P% (0 < P <= 100)`,
    'usage',
  );
}

export async function verifyRepository(repo: Repository, options: VerifyOptions): Promise<VerifyReport> {
  const problems: string[] = [];
  const damagedPoints: { id: string; problems: string[] }[] = [];
  // Index: open every file; a damaged one is reported, the rest still count.
  const condemned = new Set<string>();
  try {
    for (const record of await repo.pruneRecords()) for (const pack of record.packs) condemned.add(pack);
  } catch (error) {
    problems.push((error as Error).message);
  }
  const index = new Map<string, IndexEntry>();
  // Condemned packs count only where no live one holds the chunk: a point a backup committed while a prune
  // waited for it may use them until that prune rescues them.
  const condemnedEntries = new Map<string, IndexEntry>();
  for (const name of await repo.indexFiles()) {
    try {
      const plaintext = await repo.readSealed(name, INDEX_MAGIC, `index file ${name}`);
      for (const [key, entry] of decodeIndexEntries(plaintext))
        (condemned.has(entry.pack) ? condemnedEntries : index).set(key, entry);
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  for (const [key, entry] of condemnedEntries) if (!index.has(key)) index.set(key, entry);
  // Packs: the structure of each pack the index names (header, trailer, each indexed group's member list).
  const packProblems = new Map<string, string>();
  const byPack = new Map<string, [string, IndexEntry][]>();
  for (const pair of index) {
    const list = byPack.get(pair[1].pack);
    if (list) list.push(pair);
    else byPack.set(pair[1].pack, [pair]);
  }
  const badChunks = new Map<string, string>();
  let bytesRead = 0;
  for (const [pack, entries] of byPack) {
    const name = packFileName(pack);
    let size: number | null;
    try {
      size = await repo.backend.size(name);
    } catch (error) {
      if (!(error instanceof UnsafeFileError)) throw error;
      packProblems.set(pack, `pack ${pack} is damaged: ${error.message}`);
      continue;
    }
    if (size === null) {
      packProblems.set(pack, `pack ${pack} is missing`);
      continue;
    }
    const head = await repo.backend.getRange(name, 0, PACK_HEADER_BYTES);
    const tail = await repo.backend.getRange(
      name,
      Math.max(0, size - PACK_TRAILER_BYTES),
      PACK_TRAILER_BYTES,
    );
    const headerProblem = packHeaderProblem(pack, head);
    if (headerProblem) {
      packProblems.set(pack, `pack ${pack} is damaged: ${headerProblem}`);
      continue;
    }
    if (tail.length < PACK_TRAILER_BYTES || !tail.subarray(4).equals(PACK_END_MAGIC)) {
      packProblems.set(pack, `pack ${pack} is damaged: truncated (${size} bytes, no trailer)`);
    }
    // Each group's header and member list, read once (null: they disagree with the index's blob length).
    const heads = new Map<number, Buffer | null>();
    for (const [key, entry] of entries) {
      const end = entry.blobOffset + entry.blobLength;
      if (end > size - PACK_TRAILER_BYTES) {
        badChunks.set(key, `pack ${pack} is truncated: the group at ${entry.blobOffset} ends past its end`);
        continue;
      }
      let head = heads.get(entry.blobOffset);
      if (head === undefined) {
        const fixed = await repo.backend.getRange(name, entry.blobOffset, GROUP_HEADER_BYTES);
        const count = fixed.length === GROUP_HEADER_BYTES ? fixed.readUInt32LE(4) : 0;
        const headLength = GROUP_HEADER_BYTES + count * MEMBER_BYTES;
        const whole = count > 0 && headLength + fixed.readUInt32LE(12) === entry.blobLength;
        head = whole ? await repo.backend.getRange(name, entry.blobOffset, headLength) : null;
        heads.set(entry.blobOffset, head);
      }
      if (!head || !groupHolds(head, Buffer.from(key, 'base64'), entry.rawOffset, entry.rawLength)) {
        badChunks.set(
          key,
          `pack ${pack} is damaged: the group at ${entry.blobOffset} does not match the index`,
        );
      }
    }
  }
  // Points: every manifest opens; every chunk it names is indexed, in a sound pack, and (readData) decodes.
  // Each point's map opens (its head and segment list), and each distinct segment opens and holds its id's
  // content (points share most segments: each is read once here, once more below).
  const manifests: Manifest[] = [];
  const maps = new Map<string, PointMap>();
  for (const id of await repo.pointIds()) {
    try {
      const map = await repo.openMap(id);
      manifests.push(map.manifest);
      maps.set(id, map);
    } catch (error) {
      damagedPoints.push({ id, problems: [(error as Error).message] });
    }
  }
  const needed = new Set<string>();
  const segmentProblems = new Map<string, string>();
  const seenSegments = new Set<string>();
  const eachSegment = async (
    map: PointMap,
    visit: (key: string, segment: Segment | null, problem: string | null) => void,
  ) => {
    for (let index = 0; index < map.segmentCount; index++) {
      const key = map.list.id(index)?.toString('hex') ?? `${map.manifest.id}:${index}`;
      try {
        visit(key, await map.segment(index), null);
      } catch (error) {
        visit(key, null, (error as Error).message);
      }
    }
  };
  for (const map of maps.values()) {
    await eachSegment(map, (key, segment, problem) => {
      if (problem) segmentProblems.set(key, problem);
      if (!segment || seenSegments.has(key)) return;
      seenSegments.add(key);
      for (let at = 0; at < segment.chunkIds.length; at += 32)
        needed.add(idKey(segment.chunkIds.subarray(at, at + 32)));
    });
  }
  let chunksChecked = 0;
  if (options.readData) {
    await repo.loadIndex(true);
    let total = 0;
    // Group by group blob: each is read, opened and every member's id recomputed once.
    const groups = new Map<string, { entry: IndexEntry; keys: string[] }>();
    for (const key of needed) {
      const entry = index.get(key);
      if (badChunks.has(key) || !entry || packProblems.has(entry.pack)) continue;
      if (options.readDataSubset && !options.readDataSubset(entry.pack)) continue;
      const where = `${entry.pack}:${entry.blobOffset}`;
      const group = groups.get(where);
      if (group) group.keys.push(key);
      else groups.set(where, { entry, keys: [key] });
      total += 1;
    }
    for (const { entry, keys } of groups.values()) {
      try {
        const { blob, plain } = await repo.readGroup(entry, true);
        bytesRead += plain.length;
        for (const key of keys) {
          const mine = index.get(key)!;
          const id = Buffer.from(key, 'base64');
          if (!groupHolds(blob, id, mine.rawOffset, mine.rawLength))
            badChunks.set(
              key,
              `pack ${entry.pack}: ${new DamagedChunkError(id, ChunkDamage.otherId).message}`,
            );
        }
      } catch (error) {
        for (const key of keys) {
          const message =
            error instanceof DamagedGroupError
              ? `pack ${entry.pack}: ${new DamagedChunkError(Buffer.from(key, 'base64'), error.damage).message}`
              : (error as Error).message;
          badChunks.set(key, message);
        }
      }
      chunksChecked += keys.length;
      options.onProgress?.({ doneChunks: chunksChecked, totalChunks: total });
    }
  } else {
    chunksChecked = needed.size;
  }
  // Per distinct segment, the problems of the chunks it names (the first few).
  const problemsOf = new Map<string, string[]>();
  for (const map of maps.values()) {
    const found: string[] = [];
    const add = (problem: string) => {
      if (!found.includes(problem) && found.length < MAX_PROBLEMS_PER_POINT) found.push(problem);
    };
    await eachSegment(map, (key, segment, problem) => {
      if (problem) return add(segmentProblems.get(key) ?? problem);
      let mine = problemsOf.get(key);
      if (!mine) {
        mine = [];
        for (
          let at = 0;
          segment && at < segment.chunkIds.length && mine.length < MAX_PROBLEMS_PER_POINT;
          at += 32
        ) {
          const id = segment.chunkIds.subarray(at, at + 32);
          const chunk = idKey(id);
          const entry = index.get(chunk);
          const problem = !entry
            ? `chunk ${id.toString('hex').slice(0, 16)} is not in the index`
            : (packProblems.get(entry.pack) ?? badChunks.get(chunk));
          if (problem && !mine.includes(problem)) mine.push(problem);
        }
        problemsOf.set(key, mine);
      }
      for (const problem of mine) add(problem);
    });
    if (found.length > 0) damagedPoints.push({ id: map.manifest.id, problems: found });
  }
  for (const problem of packProblems.values()) {
    if (!damagedPoints.some((p) => p.problems.includes(problem)))
      problems.push(`${problem} (no point uses it)`);
  }
  damagedPoints.sort((a, b) => a.id.localeCompare(b.id));
  // A report about a repository that is no longer where it was named would mislead: say what happened instead.
  await repo.ensureHeld();
  return {
    ok: damagedPoints.length === 0 && problems.length === 0,
    pointsChecked:
      manifests.length + damagedPoints.filter((p) => !manifests.some((m) => m.id === p.id)).length,
    chunksChecked,
    bytesRead,
    damagedPoints,
    problems,
  };
}
