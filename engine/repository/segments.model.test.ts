// The segment layer against a model: a disk of a few dozen units whose map spans many small segments goes through
// random rounds — units rewritten, zeroed, copied from others, the used map changed — each backed up as a full
// point, an incremental told a superset of the changed blocks, or a re-read with a parent. After each: the point
// reads back as the model's disk (unused units as zeros), a segment is shared with the parent exactly when its
// units and used map are equal, diff names exactly the units that differ, and a point turned into a format 3
// manifest reads, diffs and serves as a parent the same. Prune then deletes the segments no point names.
// Seeded: DISKLINE_SEED=n reproduces a run.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { ByteRange } from '../device/types.ts';
import { seededDraws } from '../testing/seeded-random.ts';
import { encodeLegacyManifest, MANIFEST_MAGIC, type Manifest } from './manifest.ts';
import { diffPoints } from './point-diff.ts';
import type { SegmentList } from './point-file.ts';
import { pruneRepository } from './prune.ts';
import { manifestName, Repository } from './repository.ts';
import {
  bit,
  chunkOf,
  decodeSegment,
  encodeSegment,
  type Segment,
  SegmentBuilder,
  segmentId,
} from './segment.ts';
import { backupImage, readWholePoint } from './testing/backup-image.ts';
import { legacyManifestOf } from './testing/legacy-point.ts';
import { TEST_PASSWORD } from './testing/run-cli.ts';
import { countBits, UnitRanges } from './unit-ranges.ts';
import { verifyRepository } from './verify.ts';

const SEED = Number(process.env.DISKLINE_SEED ?? randomInt(2 ** 31));
const UNIT = 16 * 1024;

/** The shared seeded draws, plus up to six random byte ranges within a disk of `unitCount` units. */
function seeded(seed: number) {
  const draws = seededDraws(seed);
  const { int } = draws;
  return {
    ...draws,
    ranges(unitCount: number, size: number): ByteRange[] {
      const ranges: ByteRange[] = [];
      for (let i = int(5); i >= 0; i--) {
        const start = int(unitCount) * UNIT + int(UNIT);
        ranges.push({ start, length: Math.min(size - start, 1 + int(unitCount * UNIT)) });
      }
      return ranges;
    },
  };
}

const dir = await mkdtemp(join(tmpdir(), 'diskline-segments-'));
after(() => rm(dir, { recursive: true, force: true }));

test(`seed ${SEED}: segments encode and decode as they were built, and a cut or wrong one is damaged`, () => {
  const random = seeded(SEED);
  for (let round = 0; round < 200; round++) {
    const unitCount = 1 + random.int(70);
    const used = random.bytes(Math.ceil(unitCount / 8));
    const builder = new SegmentBuilder(unitCount, used);
    const ids = Array.from({ length: 1 + random.int(6) }, () => random.bytes(32));
    const expected: (Buffer | null)[] = [];
    for (let u = 0; u < unitCount; u++) {
      // Some units settled twice: the last chunk stands, an id no unit names any more is dropped.
      const twice = random.chance(0.2);
      if (twice) builder.set(u, ids[random.int(ids.length)]!);
      const id = random.chance(0.3) ? null : ids[random.int(ids.length)]!;
      builder.set(u, id);
      expected.push(id);
    }
    const partial = random.chance(0.5);
    const segment = builder.build(partial);
    const plaintext = encodeSegment(segment);
    const decoded = decodeSegment(plaintext, 'segment');
    assert.equal(decoded.unitCount, unitCount);
    for (let u = 0; u < unitCount; u++) {
      assert.equal(bit(decoded.used, u), bit(used, u));
      const id = chunkOf(decoded, u);
      assert.ok(id === null ? expected[u] === null : expected[u]?.equals(id), `unit ${u}`);
    }
    const named = new Set(expected.filter((id) => id !== null).map((id) => id!.toString('hex')));
    assert.equal(decoded.chunkIds.length / 32, named.size, 'each chunk once, only those named');
    assert.equal(decoded.done !== null, partial);
    assert.throws(() => decodeSegment(plaintext.subarray(0, plaintext.length - 1), 's'), /s is damaged/);
    if (named.size > 0) {
      const wrong = Buffer.from(plaintext);
      wrong.writeUInt32LE(named.size + 1, wrong.length - 4);
      assert.throws(() => decodeSegment(wrong, 's'), /names chunk/);
    }
    // Content addressing: equal content, equal id; any other content, another id.
    const key = Buffer.alloc(32, 7);
    assert.ok(segmentId(key, plaintext).equals(segmentId(key, encodeSegment(decoded))));
  }
});

test(`seed ${SEED}: unit ranges answer as a bitmap of the same ranges would`, () => {
  const random = seeded(SEED + 1);
  for (let round = 0; round < 200; round++) {
    const unitCount = 1 + random.int(300);
    const size = unitCount * UNIT - random.int(UNIT);
    const ranges = random.ranges(unitCount, size);
    const set = new UnitRanges(ranges, UNIT, unitCount);
    const naive = new Uint8Array(unitCount);
    for (const r of ranges)
      if (r.length > 0)
        for (let u = Math.floor(r.start / UNIT); u <= Math.floor((r.start + r.length - 1) / UNIT); u++)
          if (u < unitCount) naive[u] = 1;
    assert.equal(
      set.count(),
      naive.reduce((a, b) => a + b, 0),
    );
    const first = random.int(unitCount);
    const count = 1 + random.int(unitCount - first);
    const bits = set.bits(first, count);
    for (let u = 0; u < count; u++) assert.equal(bit(bits, u), naive[first + u] === 1, `unit ${first + u}`);
    assert.equal(set.touches(first, count), naive.subarray(first, first + count).includes(1));
    assert.equal(
      countBits(bits, count),
      naive.subarray(first, first + count).reduce((a, b) => a + b, 0),
    );
  }
});

/** The model: the disk's bytes and used units now. */
interface Disk {
  bytes: Buffer;
  used: Uint8Array;
}

function expectedBytes(disk: Disk): Buffer {
  const out = Buffer.from(disk.bytes);
  for (let u = 0; u * UNIT < out.length; u++)
    if (!disk.used[u]) out.fill(0, u * UNIT, Math.min(out.length, (u + 1) * UNIT));
  return out;
}

function usedRanges(disk: Disk): ByteRange[] {
  const ranges: ByteRange[] = [];
  for (let u = 0; u < disk.used.length; u++) {
    if (!disk.used[u]) continue;
    const start = u * UNIT;
    const length = Math.min(disk.bytes.length, start + UNIT) - start;
    const last = ranges.at(-1);
    if (last && last.start + last.length === start) last.length += length;
    else ranges.push({ start, length });
  }
  return ranges;
}

async function segmentsOf(
  repo: Repository,
  id: string,
): Promise<{ list: SegmentList; segments: Segment[]; per: number }> {
  const map = await repo.openMap(id);
  const segments: Segment[] = [];
  for await (const { segment } of map.segments()) segments.push(segment);
  return { list: map.list, segments, per: map.unitsPerSegment };
}

/** Whether two segments read the same: equal used maps and the same chunk in every unit. */
function sameContent(a: Segment, b: Segment): boolean {
  if (a.unitCount !== b.unitCount) return false;
  for (let u = 0; u < a.unitCount; u++) {
    if (bit(a.used, u) !== bit(b.used, u)) return false;
    const x = chunkOf(a, u);
    const y = chunkOf(b, u);
    if (x === null ? y !== null : y === null || !x.equals(y)) return false;
  }
  return true;
}

test(`seed ${SEED}: random changes across points: reads, segment sharing, diff, format 3 points and prune`, async () => {
  const random = seeded(SEED + 2);
  const repoPath = join(dir, 'model');
  const repo = await Repository.init(repoPath, {
    password: TEST_PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 64 * 1024,
    chunkSize: UNIT,
  });
  const unitCount = 40 + random.int(40);
  const size = unitCount * UNIT - random.int(UNIT);
  const disk: Disk = { bytes: random.bytes(size), used: new Uint8Array(unitCount).fill(1) };
  const image = join(dir, 'disk.img');
  const limits = { unitsPerSegment: 1 + random.int(9), groupsPerPack: 2 };
  const points: { id: string; expected: Buffer }[] = [];
  let parent: Manifest | null = null;
  let sharedSegments = 0;
  let legacyDone = false;
  for (let round = 0; round < 14; round++) {
    // Changes: units rewritten, zeroed, copied from another; some units freed or taken into use.
    const changed = new Set<number>();
    for (let i = random.int(6); i > 0; i--) {
      const u = random.int(unitCount);
      const length = Math.min(UNIT, size - u * UNIT);
      const kind = random.int(3);
      if (kind === 0) random.bytes(length).copy(disk.bytes, u * UNIT);
      else if (kind === 1) disk.bytes.fill(0, u * UNIT, u * UNIT + length);
      else {
        const from = random.int(unitCount);
        disk.bytes.copy(
          disk.bytes,
          u * UNIT,
          from * UNIT,
          from * UNIT + Math.min(length, size - from * UNIT),
        );
      }
      changed.add(u);
    }
    if (random.chance(0.4))
      for (let i = random.int(4); i >= 0; i--) {
        const u = random.int(unitCount);
        disk.used[u] = disk.used[u] ? 0 : 1;
      }
    await writeFile(image, disk.bytes);
    const how =
      parent === null || random.chance(0.15) ? 'full' : random.chance(0.7) ? 'incremental' : 'reread';
    // A tap reports at least the blocks written: a superset of the changed units.
    const changedRanges: ByteRange[] = [...changed].map((u) => ({
      start: u * UNIT + random.int(UNIT),
      length: 1,
    }));
    if (random.chance(0.5)) changedRanges.push(...random.ranges(unitCount, size).slice(0, 1));
    const manifest: Manifest = await backupImage(repo, image, {
      usedRanges: usedRanges(disk),
      limits,
      parent: how === 'full' ? null : parent,
      changedRanges: how === 'incremental' ? changedRanges : null,
    });
    const expected = expectedBytes(disk);
    const context = `seed ${SEED} round ${round} (${how})`;
    assert.ok(
      (await readWholePoint(repo, manifest.id)).equals(expected),
      `${context}: the point reads as the disk`,
    );
    if (parent && parent.unitsPerSegment === manifest.unitsPerSegment) {
      const mine = await segmentsOf(repo, manifest.id);
      const theirs = await segmentsOf(repo, parent.id);
      for (let i = 0; i < mine.list.length; i++) {
        const same = sameContent(mine.segments[i]!, theirs.segments[i]!);
        assert.equal(
          mine.list.sameAs(theirs.list, i),
          same,
          `${context}: segment ${i} shared exactly when equal`,
        );
        if (same) sharedSegments++;
      }
    }
    // Diff against every earlier point: exactly the units whose bytes or use differ.
    for (const earlier of points) {
      const diff = await diffPoints(await repo.openMap(earlier.id), await repo.openMap(manifest.id));
      const model: number[] = [];
      const mapA = await repo.openMap(earlier.id);
      const mapB = await repo.openMap(manifest.id);
      for (let u = 0; u < unitCount; u++) {
        const a = earlier.expected.subarray(u * UNIT, (u + 1) * UNIT);
        const b = expected.subarray(u * UNIT, (u + 1) * UNIT);
        // Equal bytes can still differ in use (a used zero unit against an unused one): diff names those too.
        const segA = await mapA.segment(Math.floor(u / mapA.unitsPerSegment));
        const segB = await mapB.segment(Math.floor(u / mapB.unitsPerSegment));
        const usedA = bit(segA.used, u % mapA.unitsPerSegment);
        const usedB = bit(segB.used, u % mapB.unitsPerSegment);
        if (!a.equals(b) || usedA !== usedB) model.push(u);
      }
      const named: number[] = [];
      for (const r of diff.ranges)
        for (let u = r.start / UNIT; u < Math.ceil((r.start + r.length) / UNIT); u++) named.push(u);
      assert.deepEqual(named, model, `${context}: diff against ${earlier.id}`);
    }
    points.push({ id: manifest.id, expected });
    parent = manifest;
    // Once, midway: the latest point rewritten as a format 3 manifest (one sealed file, the whole map). It must
    // read the same, diff the same, and be the parent of the next (segmented) point.
    if (!legacyDone && round >= 10) {
      legacyDone = true;
      const legacy = await legacyManifestOf(repo, manifest.id);
      await repo.writeSealed(manifestName(manifest.id), MANIFEST_MAGIC, encodeLegacyManifest(legacy));
      const reread = await repo.loadManifest(manifest.id);
      assert.equal(reread.format, 1, 'the point is a format 3 manifest now');
      assert.ok(
        (await readWholePoint(repo, manifest.id)).equals(expected),
        `${context}: format 3 reads the same`,
      );
      parent = reread;
    }
  }
  assert.ok(sharedSegments > 0, 'some segments were shared between points');
  const verify = await verifyRepository(repo, { readData: true });
  assert.ok(verify.ok, JSON.stringify(verify));

  // Prune: the points kept restore, and segments/ holds exactly the segments some point names.
  const report = await pruneRepository(repo, { keepLast: 3 }, { dryRun: false });
  assert.ok(report.deletedSegments > 0, JSON.stringify(report));
  const named = new Set<string>();
  for (const id of await repo.pointIds()) {
    const map = await repo.openMap(id);
    // A format 3 point names no stored segment (its list is computed from its whole map).
    if (map.manifest.format === 2) for (const key of map.list.distinctIds()) named.add(key);
  }
  const stored = (await readdir(join(repoPath, 'segments'))).sort();
  assert.deepEqual(stored, [...named].sort(), 'no segment is left that no point names, none named is gone');
  for (const point of points.filter((p) => report.kept.some((k) => k.id === p.id)))
    assert.ok((await readWholePoint(repo, point.id)).equals(point.expected), `point ${point.id} after prune`);
  assert.ok((await verifyRepository(repo, { readData: true })).ok);
  await repo.close();
});
