// Prune: retention policies, freed space, dry runs, and backups that run during a prune (their chunks are
// rescued, the packs they use are not deleted, and the prune finishes next time).
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openReader } from '../device/open.ts';
import { PointReading } from './locks.ts';
import { PointWriter } from './point-writer.ts';
import { pruneRepository } from './prune.ts';
import { Repository } from './repository.ts';
import { applyRetention } from './retention.ts';
import { backupImage, readWholePoint } from './testing/backup-image.ts';
import { copyRangesOffline } from './testing/offline-copy.ts';
import { patternedImage } from './testing/patterned-image.ts';
import { runCli, TEST_PASSWORD } from './testing/run-cli.ts';
import { verifyRepository } from './verify.ts';

const UNIT = 64 * 1024;
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-prune-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function repoWithPoints(name: string, count: number) {
  const repo = await Repository.init(join(dir, name), {
    password: TEST_PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 256 * 1024,
  });
  const images = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const bytes = patternedImage(`${name}-${i}`, 24, UNIT);
    // One source, backed up again and again: retention applies to each source apart.
    const path = join(dir, `${name}.img`);
    await writeFile(path, bytes);
    images.set((await backupImage(repo, path)).id, bytes);
  }
  return { repo, images };
}

test('retention keeps the newest N and the newest point of each hour, day, week, month and year', () => {
  const points = [
    { id: 'a', time: '2026-01-01T10:00:00Z' },
    { id: 'b', time: '2026-01-01T10:30:00Z' },
    { id: 'c', time: '2026-01-01T11:15:00Z' },
    { id: 'd', time: '2026-01-02T09:00:00Z' },
    { id: 'e', time: '2026-02-10T09:00:00Z' },
    { id: 'f', time: '2027-03-01T09:00:00Z' },
  ];
  assert.deepEqual([...applyRetention(points, { keepLast: 2 }).keys()].sort(), ['e', 'f']);
  assert.deepEqual([...applyRetention(points, { keepHourly: 3 }).keys()].sort(), ['d', 'e', 'f']);
  assert.deepEqual([...applyRetention(points, { keepDaily: 10 }).keys()].sort(), ['c', 'd', 'e', 'f']);
  assert.deepEqual([...applyRetention(points, { keepMonthly: 2, keepYearly: 2 }).keys()].sort(), ['e', 'f']);
  assert.deepEqual(applyRetention(points, { keepLast: 1, keepYearly: 1 }).get('f'), ['last', 'yearly']);
});

test('prune forgets points outside the policy and deletes their packs; the rest restore exactly', async () => {
  const { repo, images } = await repoWithPoints('policy', 4);
  const ids = [...images.keys()];
  const dry = await pruneRepository(repo, { keepLast: 2 }, { dryRun: true });
  assert.deepEqual(dry.forgotten.sort(), ids.slice(0, 2).sort());
  assert.equal((await repo.pointIds()).length, 4, 'a dry run changes nothing');
  const report = await pruneRepository(repo, { keepLast: 2 }, { dryRun: false });
  assert.deepEqual(report.forgotten.sort(), ids.slice(0, 2).sort());
  assert.ok(report.deletedPacks > 0 && report.freedBytes > 0, JSON.stringify(report));
  assert.deepEqual((await repo.pointIds()).sort(), ids.slice(2).sort());
  const verify = await verifyRepository(repo, { readData: true });
  assert.ok(verify.ok, JSON.stringify(verify));
  for (const id of ids.slice(2)) assert.ok((await readWholePoint(repo, id)).equals(images.get(id)!));
  await repo.close();
});

test('a backup running across a prune keeps the chunks it shares with a forgotten point', async () => {
  const { repo, images } = await repoWithPoints('rescue', 1);
  const [oldId] = [...images.keys()];
  const shared = images.get(oldId!)!;
  // The new backup starts (registered, index loaded) before the prune, and dedups against the old point.
  const path = join(dir, 'rescue-new.img');
  await writeFile(path, shared);
  const reader = await openReader(path);
  const writer = await PointWriter.create(repo, {
    source: { path, model: null, serial: null, size: reader.size, partitionTable: null },
    partitions: [],
    usedRanges: null,
    consistency: 'offline',
  });
  const ranges = writer.rangesToRead();
  await copyRangesOffline(reader, [{ start: 0, length: UNIT * 8 }], UNIT, writer);

  const pruner = await Repository.open(join(dir, 'rescue'), { password: TEST_PASSWORD });
  const first = await pruneRepository(pruner, { keepLast: 0 }, { dryRun: false });
  assert.deepEqual(first.forgotten, [oldId]);
  assert.equal(first.deletedPacks, 0, 'no pack is deleted while an older backup runs');
  assert.equal(first.waitingRecords, 1);

  await copyRangesOffline(
    reader,
    ranges
      .map((r) => ({
        start: Math.max(r.start, UNIT * 8),
        length: r.start + r.length - Math.max(r.start, UNIT * 8),
      }))
      .filter((r) => r.length > 0),
    UNIT,
    writer,
  );
  await writer.finish();
  await reader.close();
  assert.equal(writer.result.stats.newChunks, 0, 'every chunk came from the forgotten point');

  const second = await pruneRepository(pruner, { keepLast: 1 }, { dryRun: false });
  assert.deepEqual(second.forgotten, []);
  assert.equal(second.waitingRecords, 0);
  const verify = await verifyRepository(pruner, { readData: true });
  assert.ok(verify.ok, JSON.stringify(verify));
  assert.ok((await readWholePoint(pruner, writer.pointId)).equals(shared), 'the new point restores exactly');
  await pruner.close();
  await repo.close();
});

test('the prune verb needs a policy and reports what it did', async () => {
  const { repo } = await repoWithPoints('verb', 3);
  await repo.close();
  const path = join(dir, 'verb');
  const none = await runCli(['prune', '--repo', path]);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /give at least one --keep-/);
  const dry = await runCli(['prune', '--repo', path, '--keep-last', '1', '--dry-run']);
  assert.equal(dry.status, 0, dry.stderr);
  assert.match(dry.stdout, /Dry run: kept 1 point\(s\), would forget 2/);
  const real = JSON.parse((await runCli(['prune', '--repo', path, '--keep-last', '1', '--json'])).stdout);
  assert.equal(real.forgotten.length, 2);
  const points = JSON.parse((await runCli(['points', '--repo', path, '--json'])).stdout);
  assert.equal(points.length, 1);
});

test("retention applies to each source apart: one machine's points never push out another's", async () => {
  const repo = await Repository.init(join(dir, 'per-source'), {
    password: TEST_PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 256 * 1024,
  });
  const bySource = new Map<string, string[]>();
  for (let i = 0; i < 6; i++) {
    const source = join(dir, `per-source-${i % 2 === 0 ? 'a' : 'b'}.img`);
    await writeFile(source, patternedImage(`per-source-${i}`, 24, UNIT));
    const point = await backupImage(repo, source);
    bySource.set(source, [...(bySource.get(source) ?? []), point.id]);
  }
  const report = await pruneRepository(repo, { keepLast: 2 }, { dryRun: false });
  const kept = (await repo.pointIds()).sort();
  const expected = [...bySource.values()].flatMap((ids) => ids.slice(-2)).sort();
  assert.deepEqual(kept, expected, 'the newest two of each source');
  assert.equal(report.forgotten.length, 2);
  await repo.close();
});

test('prune removes temp files left by writers that died, and keeps a fresh one a live writer may own', async () => {
  const { repo } = await repoWithPoints('stale-temps', 2);
  const tmp = join(repo.path, 'tmp');
  await writeFile(join(tmp, 'stale'), Buffer.alloc(123_456, 7));
  const hourAgo = new Date(Date.now() - 3600_000);
  await utimes(join(tmp, 'stale'), hourAgo, hourAgo);
  await writeFile(join(tmp, 'fresh'), Buffer.alloc(1000, 7));
  const report = await pruneRepository(repo, { keepLast: 2 }, { dryRun: false });
  assert.equal(report.deletedTemps, 1);
  assert.ok(report.freedBytes >= 123_456);
  assert.deepEqual((await readdir(tmp)).sort(), ['fresh']);
  await repo.close();
});

test('a backup registering while a prune deletes segments waits for it, then stores the segments it names', async () => {
  const name = 'segment-race';
  const repo = await Repository.init(join(dir, name), {
    password: TEST_PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 256 * 1024,
  });
  // Segments of one unit: the forgotten point has a dozen or more of its own, deleted one by one.
  const limits = { unitsPerSegment: 1 };
  const path = join(dir, `${name}.img`);
  const old = patternedImage(`${name}-old`, 24, UNIT);
  await writeFile(path, old);
  const oldPoint = await backupImage(repo, path, { limits });
  await writeFile(path, patternedImage(`${name}-new`, 24, UNIT));
  await backupImage(repo, path, { limits });
  // Another machine backs up the old bytes again: its segments are, by content, the ones being deleted.
  const again = join(dir, `${name}-again.img`);
  await writeFile(again, old);
  const other = await Repository.open(join(dir, name), { password: TEST_PASSWORD });
  const events: string[] = [];
  let backup: Promise<unknown> | null = null;
  const turn = () => new Promise((resolve) => setImmediate(resolve));
  const report = await pruneRepository(
    repo,
    { keepLast: 1 },
    {
      dryRun: false,
      onStep: async (step) => {
        if (step !== 'segment deleted') return;
        events.push(step);
        if (!backup) {
          backup = backupImage(other, again, { limits }).then((manifest) => {
            events.push('backup done');
            return manifest;
          });
          // Registered (an event on the storage) while this prune still holds segments it will delete.
          while (!(await repo.backend.list('locks/')).some((n) => n.startsWith('locks/backup-')))
            await turn();
        }
        // The backup gets many turns between two deletions; it must write no point file (naming segments
        // this prune is deleting) until the prune is done with segments.
        for (let i = 0; i < 200; i++) await turn();
        assert.equal((await repo.pointIds()).length, 1, 'no point file appears while segments are deleted');
      },
    },
  );
  assert.deepEqual(report.forgotten, [oldPoint.id]);
  assert.ok(report.deletedSegments >= 10, JSON.stringify(report));
  const manifest = (await backup!) as { id: string };
  assert.equal(events.indexOf('backup done'), events.length - 1, `the backup waited: ${events.join(', ')}`);
  assert.ok((await readWholePoint(other, manifest.id)).equals(old), 'the new point reads back whole');
  const verify = await verifyRepository(other, { readData: true });
  assert.ok(verify.ok, JSON.stringify(verify));
  await other.close();
  await repo.close();
});

test('a parent naming chunks of condemned packs lends none of them: the incremental reads its units again', async () => {
  const { repo, images } = await repoWithPoints('lend', 1);
  const [parentId] = [...images.keys()];
  const bytes = images.get(parentId!)!;
  // As when the parent's backup deduplicated against packs a prune condemned while it ran: a record condemns
  // every pack the parent uses, and it stands when the incremental starts.
  const index = await repo.loadIndex(true);
  const time = new Date().toISOString();
  const name = `prune/${time.replace(/[-:.]/g, '')}-${'0'.repeat(32)}`;
  await repo.writePruneRecord({ name, time, packs: [...index.packs()], phase: 'condemned' });
  const parent = await repo.loadManifest(parentId!);
  const path = join(dir, 'lend.img');
  const writer = await PointWriter.create(repo, {
    source: parent.source,
    partitions: [],
    usedRanges: null,
    consistency: 'offline',
    parent,
    // Nothing changed since the parent: without condemned chunks every unit would be taken from it unread.
    changedRanges: [],
  });
  await writeFile(path, bytes);
  const reader = await openReader(path);
  const ranges = writer.rangesToRead();
  assert.equal(
    ranges.reduce((sum, r) => sum + r.length, 0),
    bytes.length,
    'every unit is read again',
  );
  await copyRangesOffline(reader, ranges, UNIT, writer);
  await writer.finish();
  await reader.close();
  assert.ok(writer.result.stats.newChunks > 0, 'the chunks are stored again in live packs');
  // The prune finishes the record (no backup runs): every chunk the parent names is now in a live pack too, so
  // the condemned one is not rescued but deleted, and both points restore from the new copies.
  const report = await pruneRepository(repo, { keepLast: 2 }, { dryRun: false });
  assert.equal(report.rescuedPacks, 0, JSON.stringify(report));
  assert.ok(report.deletedPacks > 0, JSON.stringify(report));
  const verify = await verifyRepository(repo, { readData: true });
  assert.ok(verify.ok, JSON.stringify(verify));
  assert.ok((await readWholePoint(repo, writer.pointId)).equals(bytes), 'the incremental restores exactly');
  assert.ok((await readWholePoint(repo, parentId!)).equals(bytes), 'the parent restores exactly');
  await repo.close();
});

test('a point being read (a restore, mount or copy) is kept by prune until its reader ends; an expired reader keeps nothing', async () => {
  const { repo, images } = await repoWithPoints('reading', 3);
  const ids = [...images.keys()];
  let renew: (() => void) | undefined;
  const reading = await PointReading.start(repo.backend, ids[0]!, (_ms, body) => {
    renew = body;
    return { cancel: () => {} };
  });
  const report = await pruneRepository(repo, { keepLast: 1 }, { dryRun: false });
  assert.deepEqual(report.forgotten, [ids[1]]);
  assert.deepEqual(report.kept.find((k) => k.id === ids[0])?.reasons, [
    'being read (a restore, mount or copy)',
  ]);
  assert.ok(
    (await readWholePoint(repo, ids[0]!)).equals(images.get(ids[0]!)!),
    'the point read restores exactly',
  );
  const [name] = (await repo.backend.list('locks/')).filter((n) => n.startsWith('locks/read-'));
  assert.ok(name, 'the reader is registered');
  // A reader whose renewals stopped (its machine died) for longer than a registration lasts keeps nothing.
  const stale = new Date(Date.now() - 31 * 60_000);
  await writeFile(
    join(repo.path, name),
    JSON.stringify({
      pid: 1,
      host: 'another-machine',
      time: stale.toISOString(),
      purpose: 'read',
      pointId: ids[0],
    }),
  );
  await utimes(join(repo.path, name), stale, stale);
  const after = await pruneRepository(repo, { keepLast: 1 }, { dryRun: false });
  assert.deepEqual(after.forgotten, [ids[0]]);
  assert.equal(await repo.backend.size(name), null, 'the expired registration is removed');
  // Its renewal does not bring it back, and closing it is harmless.
  renew?.();
  await reading.close();
  assert.deepEqual(
    (await repo.backend.list('locks/')).filter((n) => n.startsWith('locks/read-')),
    [],
  );
  assert.ok((await verifyRepository(repo, { readData: true })).ok);
  await repo.close();
});
