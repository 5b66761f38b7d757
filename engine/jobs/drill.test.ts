import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { InProcessClient } from '../api/client.ts';
import { openEngine } from '../api/host.ts';
import { StateStore } from '../config/state.ts';
import { withTestDisk } from '../testing/disk.ts';
import { MiB, withTempDir } from '../testing/image.ts';
import { loopUnavailableReason } from '../testing/tools.ts';
import { runDrill } from './drill.ts';

/** Backs up `image` into a fresh repository, runs a restore drill of the point, returns the job and the point. */
async function drill(image: string, dir: string) {
  process.env.DISKLINE_PASSWORD = 'drill test';
  const engine = await openEngine({ stateDir: join(dir, 'state'), schedules: false });
  const client = new InProcessClient(engine);
  try {
    const repo = join(dir, 'repo');
    await client.call('repo.init', { repo });
    const backup = await engine.jobs.waitFor((await client.call('backup.start', { source: image, repo })).id);
    assert.equal(backup.state, 'succeeded', backup.error ?? '');
    const point = String(backup.result?.point);
    const job = await engine.jobs.waitFor((await client.call('drill.start', { repo, point })).id);
    const [summary] = await client.call('points.list', { repo });
    return { job, summary: summary! };
  } finally {
    await client.close();
  }
}

test('a restore drill restores the point and finds every file system clean, and the point records it', async (t) => {
  const unavailable = loopUnavailableReason();
  if (unavailable) return t.skip(unavailable);
  await withTestDisk(
    {
      size: 96 * MiB,
      table: 'gpt',
      partitions: [
        { size: 40 * MiB, filesystem: 'ext4', fill: { files: 20, maxFileSize: 256 * 1024 } },
        { filesystem: 'fat16', fill: { files: 5, maxFileSize: 64 * 1024 } },
      ],
    },
    async (disk) =>
      withTempDir(async (dir) => {
        const { job, summary } = await drill(disk.image, dir);
        assert.equal(job.state, 'succeeded', job.error ?? '');
        const detail = String(job.result?.detail);
        assert.match(detail, /^partition 1: ext4 clean \(e2fsck -n -f\)$/m);
        assert.match(detail, /^partition 2: vfat clean \(fsck\.vfat -n\)$/m);
        assert.equal(summary.drill?.ok, true);
        assert.equal(summary.drill?.detail, detail);
        // Where the tap cannot serve the point, the drill restores it to a scratch image: same verdict.
        const state = await StateStore.open(join(dir, 'state'));
        const scratch = await runDrill(
          { repo: join(dir, 'repo'), point: summary.id, method: 'scratch' },
          { id: 'scratch-drill', signal: new AbortController().signal, progress: () => {} },
          state,
        );
        assert.equal(scratch.method, 'scratch restore');
        assert.equal(scratch.detail, detail);
      }),
  );
});

test('a restore drill of a point whose file system is damaged fails and records why', async (t) => {
  const unavailable = loopUnavailableReason();
  if (unavailable) return t.skip(unavailable);
  await withTestDisk(
    {
      size: 48 * MiB,
      table: 'gpt',
      partitions: [{ filesystem: 'ext4', fill: { files: 10, maxFileSize: 64 * 1024 } }],
    },
    async (disk) =>
      withTempDir(async (dir) => {
        // Scribble over the ext4 group descriptors (block 1 of the partition).
        const image = await open(disk.image, 'r+');
        await image.write(Buffer.alloc(4096, 0xa5), 0, 4096, disk.partitions[0]!.start + 4096);
        await image.close();
        const { job, summary } = await drill(disk.image, dir);
        assert.equal(job.state, 'failed');
        assert.match(
          job.error ?? '',
          /^Restore drill of [0-9a-f]+ failed: partition 1: ext4 has errors \(e2fsck exit \d+/,
        );
        assert.equal(summary.drill?.ok, false);
      }),
  );
});
