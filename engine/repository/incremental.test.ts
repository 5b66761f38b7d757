// Incremental backups, dedup, resume and the read API, on plain images (no root needed).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ByteRange } from '../device/types.ts';
import { Repository } from './repository.ts';
import { backupImage, countingReader, readWholePoint } from './testing/backup-image.ts';
import { changeUnits, patternedImage, writeImage } from './testing/patterned-image.ts';
import { runCli, TEST_PASSWORD } from './testing/run-cli.ts';

const UNIT = 64 * 1024;
const UNITS = 200;
let dir: string;
const opened: Repository[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-repo-test-'));
});
after(async () => {
  for (const repo of opened) await repo.close();
  await rm(dir, { recursive: true, force: true });
});

async function freshRepo(name: string, packSize = 1 << 20): Promise<Repository> {
  const repo = await Repository.init(join(dir, name), {
    password: TEST_PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize,
  });
  opened.push(repo);
  return repo;
}

test('an incremental backup reads only the changed units, stores only them, and both points restore exactly', async () => {
  const repo = await freshRepo('incremental');
  const image = patternedImage('inc', UNITS, UNIT, 12_345);
  const path = await writeImage(join(dir, 'inc.img'), image);
  const full = await backupImage(repo, path);
  assert.equal(full.stats.changedBytes, image.length);

  const before = Buffer.from(image);
  const changedUnits = [3, 4, 50, 51, 52, 150, 199];
  const changed = changeUnits(image, UNIT, changedUnits, 'v2');
  await writeImage(path, image);
  const reads: ByteRange[] = [];
  const incremental = await backupImage(repo, path, {
    parent: full,
    changedRanges: changed,
    wrapReader: (r) => countingReader(r, reads),
  });
  const readBytes = reads.reduce((sum, r) => sum + r.length, 0);
  assert.equal(readBytes, changedUnits.length * UNIT, 'only the changed units were read');
  assert.equal(incremental.stats.changedBytes, changedUnits.length * UNIT);
  assert.equal(incremental.stats.newChunks, changedUnits.length);
  assert.equal(incremental.parent, full.id);

  const reopened = await Repository.open(join(dir, 'incremental'), { password: TEST_PASSWORD });
  opened.push(reopened);
  assert.ok((await readWholePoint(reopened, full.id)).equals(before), 'the parent still reads as before');
  assert.ok(
    (await readWholePoint(reopened, incremental.id)).equals(image),
    'the incremental reads as the new image',
  );
});

test('identical units are stored once, zero units not at all, across points', async () => {
  const repo = await freshRepo('dedup');
  const image = patternedImage('dedup', UNITS, UNIT);
  const path = await writeImage(join(dir, 'dedup.img'), image);
  const first = await backupImage(repo, path);
  // units ≡ 2 (mod 5) share one content; units ≡ 3 are zero: 200 units → 40 random + 40 text + 1 + 40 half.
  assert.equal(first.stats.newChunks, 40 + 40 + 1 + 40);
  assert.equal(first.stats.zeroUnits, 40);
  const second = await backupImage(repo, path, { parent: first });
  assert.equal(second.stats.newChunks, 0);
  assert.equal(second.stats.storedBytes, 0);
  assert.equal(second.stats.changedBytes, 0, 'nothing changed against the parent, found by chunk id');
});

test('an interrupted backup is listed as incomplete and resumes without reading stored units again', async () => {
  const repo = await freshRepo('resume', 256 * 1024);
  const image = patternedImage('resume', UNITS, UNIT);
  const path = await writeImage(join(dir, 'resume.img'), image);
  let readsBeforeFailure = 0;
  const failing = await backupImage(repo, path, {
    checkpointIntervalMs: 0,
    contentStamp: 'unchanged',
    wrapReader: (r) => ({
      ...r,
      path: r.path,
      size: r.size,
      logicalSectorSize: r.logicalSectorSize,
      close: () => r.close(),
      async read(offset, length) {
        if (offset >= (UNITS / 2) * UNIT) throw new Error('simulated read error half way');
        readsBeforeFailure += length;
        return r.read(offset, length);
      },
    }),
  }).then(
    () => null,
    (error: Error) => error,
  );
  assert.match(String(failing?.message), /simulated read error/);
  const { points } = await repo.listPoints();
  assert.equal(points.length, 1);
  assert.equal(points[0]!.complete, false, 'the interrupted backup shows as incomplete');
  await assert.rejects(repo.openPoint(points[0]!.id), /incomplete/);

  const checkpoint = await repo.loadManifest(points[0]!.id);
  const reads: ByteRange[] = [];
  const resumed = await backupImage(repo, path, {
    resume: checkpoint,
    contentStamp: 'unchanged',
    wrapReader: (r) => countingReader(r, reads),
  });
  const readBytes = reads.reduce((sum, r) => sum + r.length, 0);
  assert.equal(resumed.id, checkpoint.id, 'the same point is completed');
  assert.ok(readBytes <= image.length - readsBeforeFailure + 0, `resume read ${readBytes} bytes`);
  assert.ok(readBytes < image.length * 0.75, `resume read ${readBytes} of ${image.length} bytes`);
  assert.ok((await readWholePoint(repo, resumed.id)).equals(image));
  const after = await repo.listPoints();
  assert.deepEqual(
    after.points.map((p) => [p.id, p.complete]),
    [[checkpoint.id, true]],
  );
});

/** Backs up `path` until the reader reaches unit `stopUnit`, then fails: the checkpoint left behind. */
async function interruptedBackup(
  repo: Repository,
  path: string,
  stopUnit: number,
  options: Parameters<typeof backupImage>[2],
) {
  await assert.rejects(
    backupImage(repo, path, {
      checkpointIntervalMs: 0,
      ...options,
      wrapReader: (r) => ({
        ...r,
        close: () => r.close(),
        async read(offset, length) {
          if (offset >= stopUnit * UNIT) throw new Error('interrupted');
          return r.read(offset, length);
        },
      }),
    }),
    /interrupted/,
  );
  const checkpoint = (await repo.listPoints()).points.find((p) => !p.complete);
  assert.ok(checkpoint, 'a checkpoint was left');
  return repo.loadManifest(checkpoint.id);
}

test('a resume after the source was written reads every unit again, and the point holds the new bytes', async () => {
  const repo = await freshRepo('resume-changed', 256 * 1024);
  const image = patternedImage('resume-changed', UNITS, UNIT);
  const path = await writeImage(join(dir, 'resume-changed.img'), image);
  const checkpoint = await interruptedBackup(repo, path, UNITS / 2, { contentStamp: 'before' });
  assert.equal(checkpoint.contentStamp, 'before', 'the checkpoint records the stamp it started from');
  changeUnits(image, UNIT, [1, 2, 60, 61, 150], 'rewritten');
  await writeImage(path, image);
  const reads: ByteRange[] = [];
  const resumed = await backupImage(repo, path, {
    resume: checkpoint,
    contentStamp: 'after',
    wrapReader: (r) => countingReader(r, reads),
  });
  assert.equal(resumed.id, checkpoint.id, 'the interrupted point is taken over, not left behind');
  assert.equal(
    reads.reduce((sum, r) => sum + r.length, 0),
    image.length,
    'every unit was read again',
  );
  assert.ok(
    (await readWholePoint(repo, resumed.id)).equals(image),
    'the point holds the bytes written since',
  );
});

test('a resume reads the units that were free at the interruption and are used now, even with an equal stamp', async () => {
  const repo = await freshRepo('resume-free', 256 * 1024);
  const image = patternedImage('resume-free', UNITS, UNIT);
  const path = await writeImage(join(dir, 'resume-free.img'), image);
  // At the interruption only the first half was in use (its second half was free, not read: zero in the map).
  const half = [{ start: 0, length: (UNITS / 2) * UNIT }];
  const checkpoint = await interruptedBackup(repo, path, UNITS / 4, {
    contentStamp: 'same',
    usedRanges: half,
  });
  const reads: ByteRange[] = [];
  const resumed = await backupImage(repo, path, {
    resume: checkpoint,
    contentStamp: 'same',
    usedRanges: [{ start: 0, length: image.length }],
    wrapReader: (r) => countingReader(r, reads),
  });
  const readBytes = reads.reduce((sum, r) => sum + r.length, 0);
  assert.ok(readBytes >= (UNITS / 2) * UNIT, `the newly used half was read (${readBytes} bytes read)`);
  assert.ok(readBytes < image.length, 'units settled before the interruption were reused');
  assert.ok(
    (await readWholePoint(repo, resumed.id)).equals(image),
    'no unit free at the interruption is zero',
  );
});

test('the read API returns zeros beyond stored units and exact bytes across unit boundaries', async () => {
  const repo = await freshRepo('read');
  const image = patternedImage('read', 20, UNIT, 777);
  const path = await writeImage(join(dir, 'read.img'), image);
  const point = await backupImage(repo, path);
  const reader = await repo.openPoint(point.id);
  for (const [offset, length] of [
    [0, 1],
    [UNIT - 3, 10],
    [3 * UNIT + 5, 2 * UNIT],
    [image.length - 100, 1000],
  ] as const) {
    assert.ok(
      (await reader.read(offset, length)).equals(image.subarray(offset, offset + length)),
      `read at ${offset}`,
    );
  }
  assert.equal((await reader.read(image.length, 10)).length, 0);
});

test('diff names exactly the byte ranges whose units differ between two points', async () => {
  const repo = await freshRepo('diff');
  const image = patternedImage('diff', 40, UNIT);
  const path = await writeImage(join(dir, 'diff.img'), image);
  const first = await backupImage(repo, path);
  changeUnits(image, UNIT, [5, 6, 7, 30], 'diff-v2');
  await writeImage(path, image);
  const second = await backupImage(repo, path, { parent: first });
  const run = await runCli(['diff', first.id, second.id.slice(0, 8), '--repo', join(dir, 'diff'), '--json'], {
    DISKLINE_PASSWORD: TEST_PASSWORD,
  });
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(JSON.parse(run.stdout), {
    a: first.id,
    b: second.id,
    changedBytes: 4 * UNIT,
    ranges: [
      { start: 5 * UNIT, length: 3 * UNIT },
      { start: 30 * UNIT, length: UNIT },
    ],
  });
});
