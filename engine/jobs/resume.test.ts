// Resume is only an optimization: backups of a real ext4 image are interrupted at random instants, the file
// system is changed between attempts (new files in blocks that were free at the interruption, files rewritten
// in place, files deleted), and the next backup takes the interrupted one over. Every point that completes
// restores to the image as it was when its last attempt started: each used unit byte for byte, e2fsck clean,
// every file's checksum. Run offline (the backup job in this process) and through the engine's socket API.
// Seeded: DISKLINE_SEED=n reproduces a run; DISKLINE_SOAK_ROUNDS=n runs longer.
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { open, readdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, mock, test } from 'node:test';
import type { Job } from '../../protocol/model.ts';
import { startTestDaemon } from '../api/testing/daemon.ts';
import { StateStore } from '../config/state.ts';
import { openWriter } from '../device/open.ts';
import { type Manifest, testBit } from '../repository/manifest.ts';
import { Repository } from '../repository/repository.ts';
import { restorePoint } from '../repository/restore.ts';
import { usedMapOf } from '../repository/testing/point-chunks.ts';
import {
  type Checksums,
  checkFilesystem,
  checksumTree,
  makeFilesystem,
  withMount,
} from '../testing/filesystems.ts';
import { MiB, makeSparseImage, withTempDir } from '../testing/image.ts';
import { type SeededDraws, seededDraws } from '../testing/seeded-random.ts';
import { type BackupParams, runBackup } from './backup.ts';
import type { JobContext } from './manager.ts';
import { defaultRunners } from './runners.ts';

const SEED = Number(process.env.DISKLINE_SEED ?? randomInt(2 ** 31));
const ROUNDS = Number(process.env.DISKLINE_SOAK_ROUNDS ?? 3);
const IMAGE_BYTES = 96 * MiB;
const PASSWORD = 'resume-test';

let previousEnv: string | undefined;
before(() => {
  previousEnv = process.env.DISKLINE_PASSWORD;
  process.env.DISKLINE_PASSWORD = PASSWORD;
  // The copier reports progress at most every 100 ms of its clock; this clock moves 100 ms per reading, so
  // every copied unit is reported and a cut lands at its fraction of the work, however fast the machine.
  let fakeNow = 0;
  mock.method(performance, 'now', () => {
    fakeNow += 100;
    return fakeNow;
  });
});
after(() => {
  mock.restoreAll();
  if (previousEnv === undefined) delete process.env.DISKLINE_PASSWORD;
  else process.env.DISKLINE_PASSWORD = previousEnv;
});

let fileCounter = 0;

/** New files (landing in blocks free until now), files rewritten in place, files deleted; the new checksums. */
async function changeSource(image: string, random: SeededDraws, log: string[]): Promise<Checksums> {
  return withMount(image, 'ext4', async (root) => {
    const names = (await readdir(root)).filter((name) => name.startsWith('f')).sort();
    for (let i = random.int(3); i > 0 && names.length > 1; i--) {
      const [name] = names.splice(random.int(names.length), 1);
      await unlink(join(root, name!));
      log.push(`deleted ${name}`);
    }
    for (let i = random.int(3); i > 0 && names.length > 0; i--) {
      const name = names[random.int(names.length)]!;
      const handle = await open(join(root, name), 'r+');
      const { size } = await handle.stat();
      const offset = random.int(Math.max(1, size - 4096));
      const length = Math.min(size - offset, 4096 + random.int(512 * 1024));
      await handle.write(random.bytes(length), 0, length, offset);
      await handle.close();
      log.push(`rewrote ${length} bytes of ${name} at ${offset}`);
    }
    for (let i = 1 + random.int(3); i > 0; i--) {
      const name = `f${++fileCounter}`;
      const size = 16 * 1024 + random.int(3 * MiB);
      await writeFile(join(root, name), random.bytes(size));
      log.push(`wrote ${name} (${size} bytes)`);
    }
    return checksumTree(root);
  });
}

/** Restores `point` and checks it against the source image: used units, fsck, file checksums. */
async function assertRestoresExactly(
  repoPath: string,
  point: string,
  image: string,
  expected: Checksums,
  dir: string,
  context: string,
): Promise<void> {
  const repo = await Repository.open(repoPath, { password: PASSWORD });
  let manifest: Manifest;
  let used: Uint8Array;
  const target = join(dir, 'restored.img');
  try {
    manifest = await repo.loadManifest(point);
    used = await usedMapOf(repo, manifest);
    assert.ok(manifest.complete, `${context}: point ${point} is complete`);
    await makeSparseImage(target, manifest.source.size);
    const writer = await openWriter(target, { minSize: manifest.source.size });
    try {
      await restorePoint(repo, manifest, writer, { targetIsZeroed: true });
      await writer.flush();
    } finally {
      await writer.close();
    }
  } finally {
    await repo.close();
  }
  const source = await readFile(image);
  const restored = await readFile(target);
  const unit = manifest.unitSize;
  for (let u = 0; u < manifest.unitCount; u++) {
    if (!testBit(used, u)) continue;
    const same = source
      .subarray(u * unit, (u + 1) * unit)
      .equals(restored.subarray(u * unit, (u + 1) * unit));
    assert.ok(same, `${context}: used unit ${u} of point ${point} differs from the source`);
  }
  await checkFilesystem(target, 'ext4');
  const files = await withMount(target, 'ext4', checksumTree, { readOnly: true });
  assert.deepEqual(files, expected, `${context}: every file of point ${point} has its checksum`);
  await rm(target);
}

/** A job context that cancels the job once it has copied `fraction` of what it reads. */
function interruptingContext(fraction: number | null): JobContext & { interrupted: () => boolean } {
  const controller = new AbortController();
  return {
    id: 'resume-test',
    signal: controller.signal,
    progress(update) {
      const total = update.totalBytes ?? 0;
      if (fraction !== null && total > 0 && (update.doneBytes ?? 0) >= fraction * total)
        controller.abort(new Error('interrupted by the test'));
    },
    interrupted: () => controller.signal.aborted,
  };
}

type Attempt = (
  fraction: number | null,
  noResume: boolean,
) => Promise<{ point: string | null; resumed: string | null }>;

/**
 * Rounds of: one to three attempts cut at random instants, with random changes to the file system before
 * each next attempt, then an attempt left to finish; its point must hold the image as that attempt found it.
 */
async function resumeRounds(dir: string, image: string, repoPath: string, attempt: Attempt, label: string) {
  const random = seededDraws(SEED);
  const log: string[] = [];
  let expected = await changeSource(image, random, log);
  let interruptions = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const cuts = 1 + random.int(3);
    for (let cut = 0; cut < cuts; cut++) {
      const fraction = random.next() * 0.9;
      const outcome = await attempt(fraction, false);
      log.push(
        `round ${round}: attempt cut at ${(fraction * 100).toFixed(0)}% → ${outcome.point ?? 'interrupted'}`,
      );
      if (outcome.point) {
        await assertRestoresExactly(repoPath, outcome.point, image, expected, dir, `${label}, seed ${SEED}`);
      } else interruptions += 1;
      expected = await changeSource(image, random, log);
    }
    const finished = await attempt(null, false);
    const context = `${label}, seed ${SEED}, round ${round}; ${log.join('; ')}`;
    assert.ok(finished.point, `${context}: the last attempt finished`);
    log.push(`round ${round}: finished ${finished.point} (took over ${finished.resumed ?? 'nothing'})`);
    await assertRestoresExactly(repoPath, finished.point, image, expected, dir, context);
    expected = await changeSource(image, random, log);
  }
  const repo = await Repository.open(repoPath, { password: PASSWORD });
  const { points } = await repo.listPoints();
  await repo.close();
  assert.ok(
    points.every((p) => p.complete),
    `${label}, seed ${SEED}: no interrupted point is left behind`,
  );
  return { interruptions, log };
}

async function freshSource(dir: string): Promise<{ image: string; repoPath: string }> {
  fileCounter = 0;
  const image = await makeSparseImage(join(dir, 'disk.img'), IMAGE_BYTES);
  await makeFilesystem(image, 'ext4', ['-b', '4096']);
  const repoPath = join(dir, 'repo');
  const repo = await Repository.init(repoPath, {
    password: PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 1 << 20,
  });
  await repo.close();
  return { image, repoPath };
}

test(`resumed backups restore exactly after random interruptions and changes, offline (seed ${SEED})`, {
  timeout: 600_000,
}, async (t) => {
  await withTempDir(async (dir) => {
    const { image, repoPath } = await freshSource(dir);
    const params: BackupParams = { source: image, repo: repoPath, container: undefined, volume: null };
    const { interruptions, log } = await resumeRounds(
      dir,
      image,
      repoPath,
      async (fraction, noResume) => {
        const context = interruptingContext(fraction);
        try {
          const result = await runBackup({ ...params, noResume }, context, () => {});
          return { point: String(result.point), resumed: (result.resumed as string | null) ?? null };
        } catch (error) {
          if (!context.interrupted()) throw error;
          return { point: null, resumed: null };
        }
      },
      'offline',
    );
    t.diagnostic(log.join('\n'));
    assert.ok(interruptions > 0, `seed ${SEED}: at least one backup was interrupted`);
  });
});

test(`resumed backups restore exactly through the engine's API, and noResume starts afresh (seed ${SEED})`, {
  timeout: 600_000,
}, async (t) => {
  await withTempDir(async (dir) => {
    const { image, repoPath } = await freshSource(dir);
    const state = await StateStore.open(join(dir, 'state'));
    let nextFraction: number | null = null;
    let lastContext: ReturnType<typeof interruptingContext> | null = null;
    const runners = defaultRunners(state);
    const daemon = await startTestDaemon({
      ...runners,
      // The engine's own backup job, cut where the test says (as a cancel would cut it).
      backup: (params, context, publish) => {
        const cutting = interruptingContext(nextFraction);
        lastContext = cutting;
        const signal = AbortSignal.any([context.signal, cutting.signal]);
        return runBackup(
          params,
          {
            id: context.id,
            signal,
            progress: (update) => {
              context.progress(update);
              cutting.progress(update);
            },
          },
          publish,
        );
      },
    });
    try {
      const client = await daemon.connect();
      const ended = new Map<string, Job>();
      const waiting = new Map<string, (job: Job) => void>();
      client.on('job.updated', (job: Job) => {
        if (['queued', 'running'].includes(job.state)) return;
        ended.set(job.id, job);
        waiting.get(job.id)?.(job);
      });
      const end = (id: string) => ended.get(id) ?? new Promise<Job>((resolve) => waiting.set(id, resolve));
      const run = async (fraction: number | null, noResume: boolean) => {
        nextFraction = fraction;
        const started = await client.call('backup.start', {
          source: image,
          repo: repoPath,
          ...(noResume ? { noResume: true } : {}),
        });
        const job =
          started.state === 'queued' || started.state === 'running' ? await end(started.id) : started;
        if (job.state === 'succeeded')
          return {
            point: String(job.result?.point),
            resumed: (job.result?.resumed as string | null) ?? null,
          };
        assert.ok(lastContext?.interrupted(), `the backup failed on its own: ${job.error}`);
        return { point: null, resumed: null };
      };
      const { interruptions, log } = await resumeRounds(dir, image, repoPath, run, 'through the API');
      t.diagnostic(log.join('\n'));
      assert.ok(interruptions > 0, `seed ${SEED}: at least one backup was interrupted`);
      // noResume: an interrupted backup is left as it is and a new point is made from scratch.
      const cut = await run(0.3, false);
      const repo = await Repository.open(repoPath, { password: PASSWORD });
      const interrupted = (await repo.listPoints()).points.find((p) => !p.complete);
      await repo.close();
      if (cut.point === null) {
        assert.ok(interrupted, 'the cut backup left a checkpoint');
        const afresh = await run(null, true);
        assert.ok(afresh.point && afresh.point !== interrupted.id, 'noResume made a new point');
        assert.equal(afresh.resumed, null);
      }
    } finally {
      await daemon.close();
    }
  });
});
