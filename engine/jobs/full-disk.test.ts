// A repository on a small, real ext4 file system that fills during a backup: the backup fails saying the file
// system is full and leaves nothing nobody can reach (no temp file, no pack outside the index); once space is
// freed, the same backup run again succeeds without a prune, its point restores exactly, and the repository
// holds no orphaned bytes. Checkpoints after every pack, so the failed run leaves one for the retry to take over.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rm, statfs, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openWriter } from '../device/open.ts';
import { idKey } from '../repository/chunk-index.ts';
import { Repository } from '../repository/repository.ts';
import { restorePoint } from '../repository/restore.ts';
import { verifyRepository } from '../repository/verify.ts';
import { makeFilesystem, mountFilesystem, unmountFilesystem } from '../testing/filesystems.ts';
import { MiB, makeSparseImage, withTempDir } from '../testing/image.ts';
import { runBackup } from './backup.ts';
import type { JobContext } from './manager.ts';

const PASSWORD = 'full-disk passphrase';
const saved = { password: process.env.DISKLINE_PASSWORD, checkpoint: process.env.DISKLINE_CHECKPOINT_MS };
before(() => {
  process.env.DISKLINE_PASSWORD = PASSWORD;
  process.env.DISKLINE_CHECKPOINT_MS = '0';
});
after(() => {
  for (const [key, value] of [
    ['DISKLINE_PASSWORD', saved.password],
    ['DISKLINE_CHECKPOINT_MS', saved.checkpoint],
  ] as const) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
});

const context: JobContext = { id: 'full-disk', signal: new AbortController().signal, progress: () => {} };

/** Bytes in the repository no committed or checkpointed point can reach, by kind. */
async function orphanedBytes(
  repoPath: string,
): Promise<{ temp: number; unindexedPacks: number; unreferencedPacks: number }> {
  const repo = await Repository.open(repoPath, { password: PASSWORD });
  try {
    const index = await repo.loadIndex(true);
    const referenced = new Set<string>();
    for (const id of await repo.pointIds())
      for (const chunk of (await repo.loadManifest(id)).chunkIds) referenced.add(idKey(chunk));
    const packsInUse = new Set<string>();
    for (const [key, entry] of index.entries) if (referenced.has(key)) packsInUse.add(entry.pack);
    const indexed = index.packs();
    const result = { temp: 0, unindexedPacks: 0, unreferencedPacks: 0 };
    for (const name of await repo.backend.list('tmp/')) result.temp += (await repo.backend.size(name)) ?? 0;
    for (const name of await repo.backend.list('packs/')) {
      const pack = name.slice(name.lastIndexOf('/') + 1);
      const size = (await repo.backend.size(name)) ?? 0;
      if (!indexed.has(pack)) result.unindexedPacks += size;
      else if (!packsInUse.has(pack)) result.unreferencedPacks += size;
    }
    return result;
  } finally {
    await repo.close();
  }
}

/** Runs `work` with an empty repository on a small ext4 file system of `size` bytes, mounted for it. */
async function withRepositoryOnSmallFs(
  size: number,
  work: (dir: string, mount: string, repoPath: string) => Promise<void>,
): Promise<void> {
  await withTempDir(async (dir) => {
    const fsImage = await makeSparseImage(join(dir, 'repo-fs.img'), size);
    await makeFilesystem(fsImage, 'ext4');
    const mount = await mountFilesystem(fsImage, 'ext4');
    try {
      const repoPath = join(mount, 'repo');
      const repo = await Repository.init(repoPath, {
        password: PASSWORD,
        scrypt: { N: 1024, r: 8, p: 1 },
        packSize: 4 * MiB,
      });
      await repo.close();
      await work(dir, mount, repoPath);
    } finally {
      await unmountFilesystem(mount);
    }
  });
}

test('a backup that fills the repository fails cleanly; after space is freed the retry succeeds without a prune', {
  timeout: 300_000,
}, async (t) => {
  await withRepositoryOnSmallFs(160 * MiB, async (dir, mount, repoPath) => {
    // A 96 MiB disk of random bytes (no layout: every byte is backed up, nothing compresses).
    const source = join(dir, 'disk.img');
    const sourceFile = await open(source, 'w');
    for (let at = 0; at < 96 * MiB; at += 8 * MiB)
      await sourceFile.write(randomBytes(8 * MiB), 0, 8 * MiB, at);
    await sourceFile.close();
    // Leave about 40 MiB free on the repository's file system.
    const free = async () => {
      const info = await statfs(mount);
      return info.bavail * info.bsize;
    };
    const filler = join(mount, 'filler');
    await writeFile(filler, Buffer.alloc(Math.max(0, (await free()) - 40 * MiB), 1));
    const params = { source, repo: repoPath, container: undefined, volume: null };

    await assert.rejects(
      runBackup(params, context, () => {}),
      /file system of repository .* is full \(ENOSPC/,
    );
    const afterFailure = await orphanedBytes(repoPath);
    t.diagnostic(
      `after the failed backup: ${JSON.stringify(afterFailure)}; ${(await free()) >> 20} MiB free`,
    );
    assert.equal(afterFailure.temp, 0, 'no temp file is left');
    assert.equal(afterFailure.unindexedPacks, 0, 'no pack outside the index is left');

    await rm(filler);
    const result = await runBackup(params, context, () => {});
    t.diagnostic(
      `retry: ${JSON.stringify({ point: result.point, resumed: result.resumed, storedBytes: result.storedBytes })}`,
    );
    const afterRetry = await orphanedBytes(repoPath);
    t.diagnostic(`after the retry: ${JSON.stringify(afterRetry)}`);
    assert.deepEqual(afterRetry, { temp: 0, unindexedPacks: 0, unreferencedPacks: 0 }, 'no orphaned bytes');

    const check = await Repository.open(repoPath, { password: PASSWORD });
    try {
      const { points } = await check.listPoints();
      assert.deepEqual(
        points.map((p) => [p.id, p.complete]),
        [[String(result.point), true]],
        'one complete point, the failed run taken over',
      );
      const report = await verifyRepository(check, { readData: true });
      assert.ok(report.ok, JSON.stringify(report));
      const manifest = await check.loadManifest(String(result.point));
      const target = join(dir, 'restored.img');
      const writer = await openWriter(await makeSparseImage(target, manifest.source.size), {
        minSize: manifest.source.size,
      });
      try {
        await restorePoint(check, manifest, writer, { targetIsZeroed: true });
        await writer.flush();
      } finally {
        await writer.close();
      }
      assert.ok((await readFile(target)).equals(await readFile(source)), 'the point restores exactly');
    } finally {
      await check.close();
    }
  });
});

test('packs and temp files a killed backup left on a full repository are removed by the next backup, which then fits', {
  timeout: 300_000,
}, async (t) => {
  await withRepositoryOnSmallFs(128 * MiB, async (dir, mount, repoPath) => {
    const source = join(dir, 'disk.img');
    await writeFile(source, randomBytes(32 * MiB));
    const free = async () => {
      const info = await statfs(mount);
      return info.bavail * info.bsize;
    };
    // What a backup killed on a full disk leaves: a pack in no index, a temp file of a write never finished.
    const leftover = join(repoPath, 'packs', 'ab', `ab${randomBytes(15).toString('hex')}`);
    await mkdir(join(repoPath, 'packs', 'ab'), { recursive: true });
    await writeFile(leftover, randomBytes(Math.max(0, (await free()) - 24 * MiB)));
    const temp = join(repoPath, 'tmp', randomBytes(12).toString('hex'));
    await writeFile(temp, randomBytes(MiB));
    const hourAgo = new Date(Date.now() - 3600_000);
    await utimes(temp, hourAgo, hourAgo);
    t.diagnostic(
      `left over: ${(await orphanedBytes(repoPath)).unindexedPacks} bytes of packs; ${(await free()) >> 20} MiB free`,
    );

    const params = { source, repo: repoPath, container: undefined, volume: null };
    const result = await runBackup(params, context, () => {});
    assert.ok(result.point);
    assert.deepEqual(await orphanedBytes(repoPath), { temp: 0, unindexedPacks: 0, unreferencedPacks: 0 });
  });
});
