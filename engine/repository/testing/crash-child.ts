// A child process for the crash tests: runs one backup or one prune against a repository, printing "ready"
// when it starts working, so the test can kill -9 it at a random moment of the work.
import { setTimeout as sleep } from 'node:timers/promises';
import { contentStamp, QUIET_MS } from '../../device/content-stamp.ts';
import { findRelatives } from '../point-source.ts';
import { pruneRepository } from '../prune.ts';
import { Repository } from '../repository.ts';
import { backupImage } from './backup-image.ts';

/** Small write limits: a commit writes several index files and a backup several packs, so kills land between them. */
const SMALL_LIMITS = { groupsPerPack: 1, entriesPerIndexFile: 16 };

const [operation, repoPath, argument] = process.argv.slice(2);
const repo = await Repository.open(repoPath!, { password: process.env.DISKLINE_PASSWORD ?? null });
process.stdout.write('ready\n');
if (operation === 'backup') {
  const { size } = await import('node:fs/promises').then((fs) => fs.stat(argument!));
  const { parent, checkpoint } = await findRelatives(repo, {
    path: argument!,
    model: null,
    serial: null,
    size,
    partitionTable: null,
  });
  const point = await backupImage(repo, argument!, {
    parent,
    resume: checkpoint,
    // As if the image had been quiet for a while (the test rewrites it only between finished backups), so a
    // killed backup's checkpoint is reused when the image is unchanged and re-read when it is not.
    contentStamp: await contentStamp(argument!, { now: Date.now() + QUIET_MS + 1000 }),
    checkpointIntervalMs: 0,
    threads: 1,
    limits: SMALL_LIMITS,
  });
  process.stdout.write(`committed ${point.id}\n`);
} else if (operation === 'prune') {
  const report = await pruneRepository(
    repo,
    { keepLast: Number(argument) },
    { dryRun: false, onStep: () => sleep(Math.floor(Math.random() * 15)), limits: SMALL_LIMITS },
  );
  process.stdout.write(`pruned ${JSON.stringify(report.forgotten)}\n`);
}
await repo.close();
