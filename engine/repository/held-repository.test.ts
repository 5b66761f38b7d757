// A job works only on the repository it opened: a repository removed, moved away or replaced by another one
// while a backup, restore, verify or prune runs makes that job fail with a message naming what happened; the
// removed one is not recreated and the one put in its place is not touched. Each change is made at a chosen
// step of the job (its first read, progress report or prune step), so the outcome does not depend on timing.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openWriter } from '../device/open.ts';
import { pruneRepository } from './prune.ts';
import { Repository } from './repository.ts';
import { restorePoint } from './restore.ts';
import { backupImage } from './testing/backup-image.ts';
import { changedRepository, expectedMessage, OPTIONS } from './testing/changed-repository.ts';
import { verifyRepository } from './verify.ts';

const dir = await mkdtemp(join(tmpdir(), 'diskline-held-'));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

for (const how of ['removed', 'moved', 'replaced'] as const) {
  test(`a backup into a repository ${how} while it runs fails saying so`, async () => {
    const s = await changedRepository(dir, `backup-${how}`, how);
    await assert.rejects(
      backupImage(s.repo, s.image, {
        checkpointIntervalMs: 0,
        wrapReader: (reader) => ({
          ...reader,
          close: () => reader.close(),
          read(offset, length) {
            s.change();
            return reader.read(offset, length);
          },
        }),
      }),
      expectedMessage[how],
    );
    await s.repo.close();
    await s.check();
    if (how !== 'removed') {
      // The repository that was opened (now elsewhere) holds nothing of the failed backup but a checkpoint.
      const moved = await Repository.open(`${s.path}-moved`, OPTIONS);
      const report = await verifyRepository(moved, { readData: true });
      assert.ok(report.ok, JSON.stringify(report));
      const { points } = await moved.listPoints();
      assert.deepEqual(
        points.filter((p) => p.complete).map((p) => p.id),
        s.points.map((p) => p.id),
        'no new complete point',
      );
      const indexed = (await moved.loadIndex(true)).packs();
      const packs = (await moved.backend.list('packs/')).map((name) => name.slice(name.lastIndexOf('/') + 1));
      assert.deepEqual(
        packs.filter((pack) => !indexed.has(pack)),
        [],
        'the failed backup removed the packs it wrote and could not index',
      );
      assert.deepEqual(await moved.backend.list('tmp/'), [], 'no temp file is left');
      await moved.close();
    }
  });

  test(`a restore from a repository ${how} while it runs fails saying so`, async () => {
    const s = await changedRepository(dir, `restore-${how}`, how);
    const target = join(dir, `restore-${how}.out`);
    const writer = await openWriter(target, { minSize: s.points[0]!.source.size });
    try {
      await assert.rejects(
        restorePoint(s.repo, s.points[0]!, writer, {
          targetIsZeroed: true,
          decodeThreads: 0,
          onProgress: () => s.change(),
        }),
        expectedMessage[how],
      );
    } finally {
      await writer.close();
    }
    await s.repo.close();
    await s.check();
  });

  test(`a verify of a repository ${how} while it runs fails saying so`, async () => {
    const s = await changedRepository(dir, `verify-${how}`, how);
    await assert.rejects(
      verifyRepository(s.repo, { readData: true, onProgress: () => s.change() }),
      expectedMessage[how],
    );
    await s.repo.close();
    await s.check();
  });

  test(`a prune of a repository ${how} while it runs fails saying so`, async () => {
    const s = await changedRepository(dir, `prune-${how}`, how, 3);
    await assert.rejects(
      pruneRepository(s.repo, { keepLast: 1 }, { dryRun: false, onStep: () => s.change() }),
      expectedMessage[how],
    );
    await s.repo.close();
    await s.check();
  });
}

test('a repository whose directory was removed before a backup registered is never recreated', async () => {
  const s = await changedRepository(dir, 'gone-early', 'removed');
  s.change();
  await assert.rejects(backupImage(s.repo, s.image), expectedMessage.removed);
  await s.repo.close();
  await s.check();
});
