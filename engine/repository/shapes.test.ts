// No shape of data breaks a backup: a seeded property test of the whole data path (backup, restore, read,
// verify) over generated disks of every shape real disks hold, at sizes on and around unit and group boundaries,
// with write limits made small so that groups, packs and index files all reach them. Each case is re-run alone
// with DISKLINE_SEED=N; DISKLINE_SEEDS=N runs N cases (a soak). DISKLINE_SHAPES_BIG=1 also backs up the 9 GiB
// disk of distinct, extremely compressible units with the real limits (it once overflowed the stack).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openWriter } from '../device/open.ts';
import type { BlockWriter } from '../device/types.ts';
import { seededRandom } from '../testing/seeded-random.ts';
import { groupUnits, MAX_GROUP_BYTES } from './chunk-codec.ts';
import { decodeIndexEntries, INDEX_MAGIC } from './chunk-index.ts';
import { MAX_PACK_SIZE } from './config.ts';
import type { WriteLimits } from './limits.ts';
import { scanPack } from './pack.ts';
import { pruneRepository } from './prune.ts';
import { Repository } from './repository.ts';
import { restorePoint } from './restore.ts';
import { backupImage, readWholePoint } from './testing/backup-image.ts';
import { type DiskShape, SHAPE_KINDS, ShapeGenerator } from './testing/disk-shapes.ts';
import { chunkIdsOf } from './testing/point-chunks.ts';
import { verifyRepository } from './verify.ts';

const dir = await mkdtemp(join(tmpdir(), 'diskline-shapes-'));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** DISKLINE_SEED=N reruns one case; DISKLINE_SEEDS=N runs N cases instead of the usual count (a soak). */
function seedsToRun(count: number): number[] {
  const only = process.env.DISKLINE_SEED;
  if (only) return [Number(only)];
  const soak = Number(process.env.DISKLINE_SEEDS) || count;
  return Array.from({ length: soak }, (_, i) => i + 1);
}

/** Cases share a repository in blocks (dedup across points is part of the path), each block its own kind. */
const CASES_PER_REPOSITORY = 40;

interface RepositoryKind {
  chunkSize: number;
  encrypted: boolean;
  packSize: number;
}

/** Blocks alternate: 16 KiB chunks encrypted with small packs, 64 KiB chunks unencrypted with bigger ones. */
function repositoryKind(seed: number): RepositoryKind {
  return Math.floor((seed - 1) / CASES_PER_REPOSITORY) % 2 === 0
    ? { chunkSize: 16 << 10, encrypted: true, packSize: 64 << 10 }
    : { chunkSize: 64 << 10, encrypted: false, packSize: 1 << 20 };
}

interface Case {
  shape: DiskShape;
  limits: WriteLimits;
  threads: number;
  decodeThreads: number;
}

/** The case a seed stands for: shape, size (units around group boundaries, maybe a short tail), limits. */
function caseOf(seed: number, chunkSize: number): Case {
  const random = seededRandom(seed * 7919);
  const pick = <T>(choices: readonly T[]) => choices[Math.floor(random() * choices.length)]!;
  const group = groupUnits(chunkSize);
  const units = pick([
    1,
    2,
    1 + Math.floor(random() * 24),
    1 + Math.floor(random() * 24),
    group - 1,
    group,
    group + 1,
    2 * group,
    1 + Math.floor(random() * 3 * group),
  ]);
  const tail = random() < 0.4 ? 1 + Math.floor(random() * (chunkSize - 1)) : 0;
  return {
    shape: {
      // In turn, so a short run holds every shape.
      kind: SHAPE_KINDS[seed % SHAPE_KINDS.length]!,
      seed,
      // A tail replaces the last whole unit: the disk ends inside a unit.
      size: tail > 0 ? (units - 1) * chunkSize + tail : units * chunkSize,
      unitSize: chunkSize,
      maxRunUnits: pick([1, 3, 16, group]),
    },
    limits: {
      groupsPerPack: 1 + Math.floor(random() * 4),
      entriesPerIndexFile: pick([1, 2, 7, 64, 1 + Math.floor(random() * 500)]),
      // Segments of a few units too: a case's map spans many of them, the last one short.
      unitsPerSegment: pick([1, 3, 8, 16_384]),
    },
    // Two encoding threads, and decoding threads for the restore, in a share of the cases: a thread takes
    // longer to start than a small case takes to back up.
    threads: seed % 4 === 0 ? 2 : 1,
    decodeThreads: seed % 6 === 0 ? 2 : 0,
  };
}

/** What the run reached, so the test can say that every limit was met at least once. */
interface Reached {
  prunesRewritingIndex: number;
  fullGroups: number;
  packsAtGroupLimit: number;
  indexFilesAtEntryLimit: number;
  tails: number;
  kinds: Set<string>;
}

async function newFiles(repo: Repository, prefix: string, seen: Set<string>): Promise<string[]> {
  const fresh = (await repo.backend.list(prefix)).filter((name) => !seen.has(name));
  for (const name of fresh) seen.add(name);
  return fresh;
}

async function restoreToFile(repo: Repository, pointId: string, path: string, decodeThreads: number) {
  const manifest = await repo.loadManifest(pointId);
  const writer = await openWriter(path, { minSize: manifest.source.size });
  try {
    await restorePoint(repo, manifest, writer, { targetIsZeroed: true, decodeThreads });
  } finally {
    await writer.close();
  }
}

async function runCase(
  repo: Repository,
  seed: number,
  seen: { packs: Set<string>; index: Set<string> },
  reached: Reached,
) {
  const { shape, limits, threads, decodeThreads } = caseOf(seed, repo.chunkSize);
  const what = `seed ${seed} (${shape.kind}, ${shape.size} bytes, ${JSON.stringify(limits)})`;
  const generator = new ShapeGenerator(shape);
  const image = generator.bytes();
  const source = join(dir, `source-${seed}.img`);
  const target = join(dir, `target-${seed}.img`);
  await writeFile(source, image);
  try {
    const manifest = await backupImage(repo, source, { threads, checkpointIntervalMs: 0, limits });
    assert.equal(manifest.complete, true, what);

    // The limits hold in every file this backup wrote, and the run notes which ones it reached.
    const group = groupUnits(repo.chunkSize);
    for (const name of await newFiles(repo, 'packs/', seen.packs)) {
      const groups = scanPack(
        name.slice(name.lastIndexOf('/') + 1),
        await repo.backend.get(name, MAX_PACK_SIZE),
      );
      assert.ok(groups.length <= limits.groupsPerPack, `${what}: ${name} holds ${groups.length} groups`);
      if (groups.length === limits.groupsPerPack) reached.packsAtGroupLimit += 1;
      for (const { members } of groups) {
        let rawBytes = 0;
        for (const member of members) rawBytes += member.rawLength;
        assert.ok(
          members.length <= group && rawBytes <= MAX_GROUP_BYTES,
          `${what}: a group of ${members.length}`,
        );
        if (members.length === group) reached.fullGroups += 1;
      }
    }
    for (const name of await newFiles(repo, 'index/', seen.index)) {
      let entries = 0;
      for (const _ of decodeIndexEntries(await repo.readSealed(name, INDEX_MAGIC, name))) entries += 1;
      assert.ok(entries <= limits.entriesPerIndexFile, `${what}: ${name} holds ${entries} entries`);
      if (entries === limits.entriesPerIndexFile) reached.indexFilesAtEntryLimit += 1;
    }
    if (shape.size % shape.unitSize !== 0) reached.tails += 1;
    reached.kinds.add(shape.kind);

    await restoreToFile(repo, manifest.id, target, decodeThreads);
    assert.ok((await readFile(target)).equals(image), `${what}: the restored disk differs`);
    // The read path of mount and instant restore, for a share of the cases.
    if (seed % 4 === 0) assert.ok((await readWholePoint(repo, manifest.id)).equals(image), `${what}: read`);
    return manifest.id;
  } finally {
    await rm(source, { force: true });
    await rm(target, { force: true });
  }
}

/** Index files a prune writes, at most: small, so the rewritten index is split. */
const PRUNE_INDEX_ENTRIES = 5;

/** Generations of one disk a block also backs up: retention is per source, so only these give prune work. */
const GENERATIONS = 5;

/** Back up successive generations of one disk (same path and size, new random units each time). */
async function backUpGenerations(repo: Repository, block: number, shapeOfPoint: Map<string, DiskShape>) {
  const source = join(dir, `generations-${block}.img`);
  try {
    for (let generation = 0; generation < GENERATIONS; generation += 1) {
      const shape: DiskShape = {
        kind: 'distinct-random',
        seed: 1_000_000 + block * GENERATIONS + generation,
        size: 12 * repo.chunkSize,
        unitSize: repo.chunkSize,
        maxRunUnits: 1,
      };
      await writeFile(source, new ShapeGenerator(shape).bytes());
      const manifest = await backupImage(repo, source, { threads: 1, checkpointIntervalMs: 0 });
      assert.equal(manifest.complete, true, `generation ${generation} of block ${block}`);
      shapeOfPoint.set(manifest.id, shape);
    }
  } finally {
    await rm(source, { force: true });
  }
}

/**
 * Prune keeps the last three points of each source: the generations' oldest go, the index it rewrites is split
 * within the limit, and what it keeps restores exactly.
 */
async function pruneAndCheck(
  repo: Repository,
  shapeOfPoint: Map<string, DiskShape>,
  reached: Reached,
  label: string,
) {
  const report = await pruneRepository(
    repo,
    { keepLast: 3 },
    { dryRun: false, limits: { entriesPerIndexFile: PRUNE_INDEX_ENTRIES } },
  );
  if (report.deletedPacks > 0) {
    reached.prunesRewritingIndex += 1;
    for (const name of await repo.indexFiles()) {
      let entries = 0;
      for (const _ of decodeIndexEntries(await repo.readSealed(name, INDEX_MAGIC, name))) entries += 1;
      assert.ok(entries <= PRUNE_INDEX_ENTRIES, `${label}: after prune, ${name} holds ${entries} entries`);
    }
  }
  await verifyClean(repo, `${label}, pruned`);
  assert.equal(report.kept.length, shapeOfPoint.size - (GENERATIONS - 3), `${label}: points kept`);
  for (const { id } of report.kept) {
    const shape = shapeOfPoint.get(id)!;
    const target = join(dir, `pruned-${shape.seed}.img`);
    try {
      await restoreToFile(repo, id, target, 0);
      assert.ok(
        (await readFile(target)).equals(new ShapeGenerator(shape).bytes()),
        `${label}: seed ${shape.seed} after prune`,
      );
    } finally {
      await rm(target, { force: true });
    }
  }
}

async function verifyClean(repo: Repository, label: string): Promise<void> {
  const report = await verifyRepository(repo, { readData: true });
  assert.deepEqual(
    { ok: report.ok, problems: report.problems, damagedPoints: report.damagedPoints },
    { ok: true, problems: [], damagedPoints: [] },
    label,
  );
}

test('every shape of disk backs up, restores byte for byte and verifies, with groups, packs and index files at their limits', {
  timeout: 30 * 60_000,
}, async () => {
  const seeds = seedsToRun(200);
  const reached: Reached = {
    prunesRewritingIndex: 0,
    fullGroups: 0,
    packsAtGroupLimit: 0,
    indexFilesAtEntryLimit: 0,
    tails: 0,
    kinds: new Set(),
  };
  // Blocks of cases, each in its own repository, two at a time: a backup spends much of its time starting its
  // worker threads, so two blocks keep both cores busy.
  const blocks = new Map<number, number[]>();
  for (const seed of seeds) {
    const block = Math.floor((seed - 1) / CASES_PER_REPOSITORY);
    blocks.set(block, [...(blocks.get(block) ?? []), seed]);
  }
  const queue = [...blocks];
  const runBlocks = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const [block, blockSeeds] = next;
      const kind = repositoryKind(blockSeeds[0]!);
      const repo = await Repository.init(join(dir, `repo-${block}`), {
        password: kind.encrypted ? 'shapes passphrase' : null,
        insecureNoEncryption: !kind.encrypted,
        scrypt: { N: 1024, r: 8, p: 1 },
        chunkSize: kind.chunkSize,
        packSize: kind.packSize,
      });
      try {
        const seen = { packs: new Set<string>(), index: new Set<string>() };
        const shapeOfPoint = new Map<string, DiskShape>();
        for (const seed of blockSeeds)
          shapeOfPoint.set(await runCase(repo, seed, seen, reached), caseOf(seed, repo.chunkSize).shape);
        await backUpGenerations(repo, block, shapeOfPoint);
        const label = `repository of cases ${blockSeeds[0]} to ${blockSeeds.at(-1)}`;
        await verifyClean(repo, label);
        await pruneAndCheck(repo, shapeOfPoint, reached, label);
      } finally {
        await repo.close();
      }
    }
  };
  await Promise.all([runBlocks(), runBlocks()]);
  console.log(`reached: ${JSON.stringify({ ...reached, kinds: [...reached.kinds] })}`);
  if (!process.env.DISKLINE_SEED) {
    assert.ok(reached.fullGroups > 0, 'no group was full');
    assert.ok(reached.packsAtGroupLimit > 0, 'no pack reached its group limit');
    assert.ok(reached.indexFilesAtEntryLimit > 0, 'no index file reached its entry limit');
    assert.ok(reached.tails > 0, 'no disk ended inside a unit');
    assert.ok(reached.prunesRewritingIndex > 0, 'no prune rewrote the index');
    assert.deepEqual([...reached.kinds].sort(), [...SHAPE_KINDS].sort(), 'every shape was tried');
  }
});

/** A restore target that checks every write against the generator instead of storing 9 GiB. */
function checkingTarget(generator: ShapeGenerator, path: string): BlockWriter & { written: number } {
  const expected = Buffer.alloc(8 << 20);
  const target = {
    path,
    size: generator.shape.size,
    logicalSectorSize: 512,
    written: 0,
    read: async () => {
      throw new Error('the checking target is write-only');
    },
    write: async (offset: number, data: Buffer) => {
      for (let at = 0; at < data.length; at += expected.length) {
        const piece = data.subarray(at, at + expected.length);
        generator.read(offset + at, expected.subarray(0, piece.length));
        if (!piece.equals(expected.subarray(0, piece.length)))
          throw new Error(`restored bytes at ${offset + at} differ from the disk`);
      }
      target.written += data.length;
    },
    flush: async () => {},
    close: async () => {},
  };
  return target;
}

test('the 9 GiB disk of distinct, extremely compressible 64 KiB units backs up and restores byte for byte', {
  skip: process.env.DISKLINE_SHAPES_BIG ? false : 'a soak: set DISKLINE_SHAPES_BIG=1',
  timeout: 4 * 60 * 60_000,
}, async () => {
  const shape: DiskShape = { kind: 'distinct-compressible', seed: 0, size: 9 * 2 ** 30, unitSize: 64 << 10 };
  const generator = new ShapeGenerator(shape);
  const repo = await Repository.init(join(dir, 'big-repo'), { insecureNoEncryption: true });
  // The source is a sparse file of the disk's size; its bytes come from the generator.
  const source = join(dir, 'big-source.img');
  await writeFile(source, '');
  await truncate(source, shape.size);
  try {
    const started = Date.now();
    const manifest = await backupImage(repo, source, { wrapReader: () => generator.reader(source) });
    const backupMs = Date.now() - started;
    assert.equal(manifest.complete, true);
    assert.equal(
      (await chunkIdsOf(repo, manifest)).length,
      generator.unitCount - 1,
      'unit 0 is zeros; every other is distinct',
    );
    const target = checkingTarget(generator, join(dir, 'big-target'));
    await restorePoint(repo, manifest, target, { targetIsZeroed: true });
    assert.equal(target.written, shape.size - shape.unitSize, 'every unit but the zero one was written');
    const verified = await verifyRepository(repo, { readData: true });
    assert.equal(verified.ok, true, JSON.stringify(verified.problems));
    const packs = await repo.backend.list('packs/');
    let mostEntries = 0;
    for (const name of packs) {
      let entries = 0;
      for (const group of scanPack(
        name.slice(name.lastIndexOf('/') + 1),
        await repo.backend.get(name, MAX_PACK_SIZE),
      ))
        entries += group.members.length;
      mostEntries = Math.max(mostEntries, entries);
    }
    console.log(
      `9 GiB: backup ${(backupMs / 1000).toFixed(1)} s, ${packs.length} packs, up to ${mostEntries} chunks in one`,
    );
  } finally {
    await repo.close();
    await rm(source, { force: true });
  }
});
