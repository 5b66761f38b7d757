// The intermediate container a backup names is used as named: a plan with a spare partition (a real loop device)
// as its container runs, the session holds the partition, and the point restores equal to the source; memory
// and file containers are held as named too. A partition
// that is mounted, too small, the source itself, or on the repository's disk is refused with the reason, and the
// repository gets no point.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Job } from '../../protocol/model.ts';
import { InProcessClient } from '../api/client.ts';
import { openEngine } from '../api/host.ts';
import { makeFilesystem, withMount } from '../testing/filesystems.ts';
import { partitionImage } from '../testing/image.ts';
import { attachLoop, type LoopDevice } from '../testing/loop.ts';
import { loopUnavailableReason } from '../testing/tools.ts';

const skip = loopUnavailableReason() ?? false;
const MiB = 1 << 20;

let dir: string;
let client: InProcessClient;
let source: string;
const loops: LoopDevice[] = [];

async function sha256(path: string, length: number): Promise<string> {
  return createHash('sha256')
    .update((await readFile(path)).subarray(0, length))
    .digest('hex');
}

async function spareLoop(name: string, size: number): Promise<LoopDevice> {
  const image = join(dir, name);
  await writeFile(image, '');
  await truncate(image, size);
  const loop = await attachLoop(image);
  loops.push(loop);
  return loop;
}

async function ended(job: Job): Promise<Job> {
  return client.engine.jobs.waitFor(job.id);
}

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'diskline-partition-container-'));
  process.env.DISKLINE_PASSWORD = 'partition container';
  const engine = await openEngine({ stateDir: join(dir, 'state'), schedules: false });
  client = new InProcessClient(engine);
  source = join(dir, 'source.img');
  await writeFile(source, '');
  await truncate(source, 24 * MiB);
  await makeFilesystem(source, 'ext4');
  const sourceLoop = await attachLoop(source);
  try {
    await withMount(sourceLoop.device, 'ext4', async (mountDir) => {
      await writeFile(join(mountDir, 'kept.bin'), Buffer.alloc(3 * MiB, 7));
      await writeFile(join(mountDir, 'note.txt'), 'in the point\n');
    });
  } finally {
    await sourceLoop.detach();
  }
  await client.call('repo.init', { repo: join(dir, 'repo'), encrypted: true });
});

after(async () => {
  if (skip) return;
  await client.close();
  for (const loop of loops) await loop.detach();
  await rm(dir, { recursive: true, force: true });
});

test('a plan with a partition container runs, holds the partition, and its point restores equal to the source', {
  skip,
  timeout: 120_000,
}, async () => {
  const spare = await spareLoop('spare.img', 8 * MiB);
  const plan = await client.call('plans.save', {
    id: '',
    name: 'With a partition container',
    source,
    repo: join(dir, 'repo'),
    schedule: null,
    retention: {},
    container: { kind: 'device', path: spare.device },
    enabled: true,
  });
  const ran = new Promise<{ ok: boolean; message: string }>((resolve) => client.on('plan.ran', resolve));
  const backup = await ended(await client.call('plans.runNow', { id: plan.id }));
  assert.equal(backup.state, 'succeeded', backup.error ?? '');
  assert.equal((await ran).ok, true);
  // The session's container was the whole partition.
  assert.equal(backup.container?.capacityBytes, 8 * MiB);
  const target = join(dir, 'restored.img');
  const preview = await client.call('restore.preview', {
    repo: join(dir, 'repo'),
    point: String(backup.result?.point),
    to: target,
  });
  assert.equal(preview.refusal, null);
  const restore = await ended(
    await client.call('restore.start', {
      repo: join(dir, 'repo'),
      point: String(backup.result?.point),
      to: target,
      confirmToken: preview.confirmToken,
    }),
  );
  assert.equal(restore.state, 'succeeded', restore.error ?? '');
  assert.equal(await sha256(target, 24 * MiB), await sha256(source, 24 * MiB));
});

test('a partition container that is mounted, too small, the source, or on the repository disk is refused with the reason', {
  skip,
  timeout: 120_000,
}, async () => {
  const repo = join(dir, 'repo');
  const pointsBefore = (await client.call('points.list', { repo })).length;
  const refusedWith = async (container: { kind: 'device'; path: string }, from: string, reason: RegExp) => {
    const job = await ended(await client.call('backup.start', { source: from, repo, container }));
    assert.equal(job.state, 'failed');
    assert.equal(job.failureKind, 'refusal', job.error ?? '');
    assert.match(job.error ?? '', reason);
  };
  const tiny = await spareLoop('tiny.img', 512 * 1024);
  await refusedWith(
    { kind: 'device', path: tiny.device },
    source,
    new RegExp(
      `refusing to use ${tiny.device} as the container: it holds 524288 bytes, and a container needs at least 1048576`,
    ),
  );
  const busy = await spareLoop('busy.img', 16 * MiB);
  await makeFilesystem(busy.device, 'ext4');
  await withMount(busy.device, 'ext4', async () => {
    await refusedWith(
      { kind: 'device', path: busy.device },
      source,
      new RegExp(`refusing to use ${busy.device} as the container: it is mounted or in use`),
    );
  });
  const sourceLoop = await spareLoop('loop-source.img', 16 * MiB);
  await refusedWith(
    { kind: 'device', path: sourceLoop.device },
    sourceLoop.device,
    new RegExp(
      `refusing to use ${sourceLoop.device} as the container: it is \\(part of\\) ${sourceLoop.device}, the disk being backed up`,
    ),
  );
  // A repository on a file system of one disk, the container on another partition of the same disk.
  const shared = join(dir, 'shared.img');
  await writeFile(shared, '');
  await truncate(shared, 48 * MiB);
  await partitionImage(shared, 'gpt', [{ size: 24 * MiB }, {}]);
  const sharedLoop = await attachLoop(shared);
  loops.push(sharedLoop);
  assert.equal(sharedLoop.partitions.length, 2);
  await makeFilesystem(sharedLoop.partitions[0]!, 'ext4');
  await withMount(sharedLoop.partitions[0]!, 'ext4', async (mountDir) => {
    const sharedRepo = join(mountDir, 'repo');
    await mkdir(sharedRepo);
    await client.call('repo.init', { repo: sharedRepo, encrypted: true });
    const job = await ended(
      await client.call('backup.start', {
        source,
        repo: sharedRepo,
        container: { kind: 'device', path: sharedLoop.partitions[1]! },
      }),
    );
    assert.equal(job.failureKind, 'refusal', job.error ?? '');
    assert.match(job.error ?? '', /the disk the repository .* is written to/);
    assert.equal((await client.call('points.list', { repo: sharedRepo })).length, 0);
  });
  assert.equal((await client.call('points.list', { repo })).length, pointsBefore, 'no point was made');
});

test('memory and file containers named by a backup are the ones its session holds; the file is gone after', {
  skip,
  timeout: 120_000,
}, async () => {
  const repo = join(dir, 'repo');
  const memory = await ended(
    await client.call('backup.start', {
      source,
      repo,
      container: { kind: 'memory', capacityBytes: 2 * MiB },
    }),
  );
  assert.equal(memory.state, 'succeeded', memory.error ?? '');
  assert.equal(memory.container?.capacityBytes, 2 * MiB);
  const path = join(dir, 'container.file');
  const file = await ended(
    await client.call('backup.start', {
      source,
      repo,
      container: { kind: 'file', path, initialBytes: 1 * MiB, capacityBytes: 3 * MiB },
    }),
  );
  assert.equal(file.state, 'succeeded', file.error ?? '');
  assert.equal(file.container?.capacityBytes, 3 * MiB);
  await assert.rejects(readFile(path), { code: 'ENOENT' });
});
