// The daemon's restore job refuses a damaged or incomplete point before it empties the target image.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { packFileName } from '../repository/pack.ts';
import { Repository } from '../repository/repository.ts';
import { backupImage } from '../repository/testing/backup-image.ts';
import { patternedImage, writeImage } from '../repository/testing/patterned-image.ts';
import { chunkIdsOf } from '../repository/testing/point-chunks.ts';
import type { JobContext } from './manager.ts';
import { runRestore } from './restore.ts';

const dir = await mkdtemp(join(tmpdir(), 'diskline-restore-job-'));
const savedPassword = process.env.DISKLINE_PASSWORD;
process.env.DISKLINE_PASSWORD = 'job passphrase';
after(async () => {
  if (savedPassword === undefined) delete process.env.DISKLINE_PASSWORD;
  else process.env.DISKLINE_PASSWORD = savedPassword;
  await rm(dir, { recursive: true, force: true });
});

const context: JobContext = { id: 'test', signal: new AbortController().signal, progress: () => undefined };

test('a restore job with a pack missing fails before the target image is emptied', async () => {
  const repoPath = join(dir, 'repo');
  const repo = await Repository.init(repoPath, {
    password: 'job passphrase',
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 1 << 20,
  });
  const image = patternedImage('job', 64, repo.chunkSize, 0);
  const manifest = await backupImage(repo, await writeImage(join(dir, 'source.img'), image));
  const index = await repo.loadIndex();
  const pack = index.get((await chunkIdsOf(repo, manifest))[0]!)!.pack;
  await repo.close();
  const target = join(dir, 'target.img');
  const before = Buffer.alloc(image.length, 0x5a);
  await writeFile(target, before);
  await rm(join(repoPath, packFileName(pack)));
  await assert.rejects(
    runRestore({ repo: repoPath, point: manifest.id, to: target }, context),
    new RegExp(`pack ${pack} is missing; nothing was written`),
  );
  assert.ok((await readFile(target)).equals(before), 'the target keeps every byte');
});
