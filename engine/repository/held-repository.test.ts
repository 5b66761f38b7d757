// A job works only on the repository it opened: a repository removed, moved away or replaced by another one
// while a backup, restore, verify or prune runs makes that job fail with a message naming what happened; the
// removed one is not recreated and the one put in its place is not touched. Each change is made at a chosen
// step of the job (its first read, progress report or prune step), so the outcome does not depend on timing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openWriter } from '../device/open.ts';
import type { Manifest } from './manifest.ts';
import { pruneRepository } from './prune.ts';
import { Repository } from './repository.ts';
import { restorePoint } from './restore.ts';
import { backupImage } from './testing/backup-image.ts';
import { patternedImage, writeImage } from './testing/patterned-image.ts';
import { verifyRepository } from './verify.ts';

const UNIT = 64 * 1024;
const dir = await mkdtemp(join(tmpdir(), 'diskline-held-'));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const OPTIONS = { password: 'pw', scrypt: { N: 1024, r: 8, p: 1 }, packSize: 256 * 1024 };

/** Every file under `root` with a hash of its bytes: equal before and after means untouched. */
function contents(root: string): Record<string, string> {
  const found: Record<string, string> = {};
  const walk = (at: string, relative: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(at, entry.name), `${relative}${entry.name}/`);
      else
        found[`${relative}${entry.name}`] = createHash('sha256')
          .update(readFileSync(join(at, entry.name)))
          .digest('hex');
    }
  };
  walk(root, '');
  return found;
}

type Change = 'removed' | 'moved' | 'replaced';
const expectedMessage: Record<Change, RegExp> = {
  removed: /was removed while in use; nothing was written in its place/,
  moved:
    /was moved while in use \(the repository that was opened is now at .*moved\).*run again with its new place/,
  replaced: /was replaced by another repository while in use .*nothing was written to the one now at/,
};

interface Setup {
  path: string;
  repo: Repository;
  image: string;
  points: Manifest[];
  /** Makes the change, synchronously (it runs inside a job's callback). */
  change(): void;
  /** After the job failed: the removed path is not recreated, the replacing repository untouched. */
  check(): Promise<void>;
}

async function setup(name: string, how: Change, pointCount = 1): Promise<Setup> {
  const path = join(dir, name);
  const repo = await Repository.init(path, OPTIONS);
  const bytes = patternedImage(name, 48, UNIT);
  const image = await writeImage(join(dir, `${name}.img`), bytes);
  const points: Manifest[] = [];
  for (let i = 0; i < pointCount; i++) {
    bytes.fill(i + 1, 0, 16);
    await writeImage(image, bytes);
    points.push(await backupImage(repo, image));
  }
  // The repository that takes the place of the first, with a point of its own.
  const otherPath = join(dir, `${name}-other`);
  const other = await Repository.init(otherPath, OPTIONS);
  await backupImage(
    other,
    await writeImage(join(dir, `${name}-other.img`), patternedImage('other', 8, UNIT)),
  );
  await other.close();
  const otherBefore = contents(otherPath);
  let changed = false;
  return {
    path,
    repo,
    image,
    points,
    change() {
      if (changed) return;
      changed = true;
      if (how === 'removed') rmSync(path, { recursive: true });
      else renameSync(path, `${path}-moved`);
      if (how === 'replaced') renameSync(otherPath, path);
    },
    async check() {
      assert.ok(changed, 'the change was made while the job ran');
      if (how === 'removed')
        assert.equal(await stat(path).catch(() => null), null, 'the removed repository is not recreated');
      if (how === 'moved')
        assert.equal(await stat(path).catch(() => null), null, 'nothing appeared at the old name');
      if (how === 'replaced')
        assert.deepEqual(contents(path), otherBefore, 'the other repository is untouched');
    },
  };
}

for (const how of ['removed', 'moved', 'replaced'] as const) {
  test(`a backup into a repository ${how} while it runs fails saying so`, async () => {
    const s = await setup(`backup-${how}`, how);
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
      await moved.close();
    }
  });

  test(`a restore from a repository ${how} while it runs fails saying so`, async () => {
    const s = await setup(`restore-${how}`, how);
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
    const s = await setup(`verify-${how}`, how);
    await assert.rejects(
      verifyRepository(s.repo, { readData: true, onProgress: () => s.change() }),
      expectedMessage[how],
    );
    await s.repo.close();
    await s.check();
  });

  test(`a prune of a repository ${how} while it runs fails saying so`, async () => {
    const s = await setup(`prune-${how}`, how, 3);
    await assert.rejects(
      pruneRepository(s.repo, { keepLast: 1 }, { dryRun: false, onStep: () => s.change() }),
      expectedMessage[how],
    );
    await s.repo.close();
    await s.check();
  });
}

test('a repository whose directory was removed before a backup registered is never recreated', async () => {
  const s = await setup('gone-early', 'removed');
  s.change();
  await assert.rejects(backupImage(s.repo, s.image), expectedMessage.removed);
  await s.repo.close();
  await s.check();
});
