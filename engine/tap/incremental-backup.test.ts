// Changed-block tracking (and consistent-point hooks) end to end, through the engine API: the first backup of an attached volume reads
// everything and says why; the next reads only the blocks the tap saw written and still restores to exactly the
// files of the moment (fsck clean); after the image is written around the tap, the next backup reads everything
// again and says why.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { InProcessClient } from '../api/client.ts';
import { openEngine } from '../api/host.ts';
import { nativeHelperAvailable } from '../native/index.ts';
import { tapUnavailableReason } from './system-state.ts';

const run = promisify(execFile);
const skipReason = !nativeHelperAvailable()
  ? 'native helper not built (npm run build)'
  : tapUnavailableReason();
const MiB = 1024 * 1024;

function pattern(seed: number, size: number): Buffer {
  const data = Buffer.alloc(size);
  let state = seed;
  for (let i = 0; i < size; i += 4) {
    state = (state * 1664525 + 1013904223) >>> 0;
    data.writeUInt32LE(state, i);
  }
  return data;
}

test('an attached volume backs up incrementally from tracked changes and restores exactly', {
  skip: skipReason ?? false,
  timeout: 120_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-incremental-'));
  const image = join(dir, 'disk.img');
  const mnt = join(dir, 'mnt');
  process.env.DISKLINE_PASSWORD = 'incremental test';
  const engine = await openEngine({ stateDir: join(dir, 'state'), schedules: false });
  const client = new InProcessClient(engine);
  let mounted = false;
  try {
    await writeFile(image, '');
    await truncate(image, 64 * MiB);
    await run('mkfs.ext4', ['-q', '-F', image]);
    const repo = join(dir, 'repo');
    await client.call('repo.init', { repo });
    const attached = await client.call('volumes.attach', { source: image });
    await mkdir(mnt);
    await run('mount', [attached.loopDevice, mnt]);
    mounted = true;
    const first = pattern(1, 4 * MiB);
    await writeFile(join(mnt, 'first.bin'), first);
    await run('sync');
    const backup = async (hooks: { preHook?: string; postHook?: string } = {}) => {
      const job = await engine.jobs.waitFor(
        (await client.call('backup.start', { source: image, repo, ...hooks })).id,
      );
      assert.equal(job.state, 'succeeded', job.error ?? '');
      return job.result as Record<string, unknown>;
    };
    const full = await backup({
      preHook: `echo "$DISKLINE_MOUNTPOINTS" > "${join(dir, 'pre')}"`,
      postHook: `echo "$DISKLINE_DEVICE" > "${join(dir, 'post')}"`,
    });
    // The hooks ran around the freeze with the volume's mount points and loop device.
    assert.equal(await readFile(join(dir, 'pre'), 'utf8'), `${mnt}\n`);
    assert.equal(await readFile(join(dir, 'post'), 'utf8'), `${attached.loopDevice}\n`);
    assert.equal(full.consistency, 'frozen');
    assert.match(
      String(full.changeTracking),
      /^read everything: change tracking is invalid: no change-tracking record/,
    );

    const second = pattern(2, 2 * MiB);
    await writeFile(join(mnt, 'second.bin'), second);
    await writeFile(join(mnt, 'first.bin'), pattern(3, MiB), { flag: 'r+' });
    await run('sync');
    const incremental = await backup();
    assert.equal(incremental.changeTracking, 'read only the changed blocks');
    assert.deepEqual(incremental.warnings, []);

    // Restore the incremental point and compare with the files as they are now (nothing wrote since).
    const expectedFirst = Buffer.concat([pattern(3, MiB), first.subarray(MiB)]);
    await run('umount', [mnt]);
    mounted = false;
    const restored = join(dir, 'restored.img');
    const preview = await client.call('restore.preview', {
      repo,
      point: String(incremental.point),
      to: restored,
    });
    const restore = await engine.jobs.waitFor(
      (
        await client.call('restore.start', {
          repo,
          point: String(incremental.point),
          to: restored,
          confirmToken: preview.confirmToken,
        })
      ).id,
    );
    assert.equal(restore.state, 'succeeded', restore.error ?? '');
    await run('e2fsck', ['-fn', restored]);
    await run('mount', ['-o', 'loop,ro', restored, mnt]);
    mounted = true;
    const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    assert.equal(sha(await readFile(join(mnt, 'first.bin'))), sha(expectedFirst));
    assert.equal(sha(await readFile(join(mnt, 'second.bin'))), sha(second));
    await run('umount', [mnt]);
    mounted = false;

    // Written around the tap while detached: the next backup reads everything and says why.
    await client.call('volumes.detach', { source: image });
    await writeFile(image, Buffer.alloc(512, 0), { flag: 'r+' });
    await client.call('volumes.attach', { source: image });
    const after = await backup();
    assert.equal(
      after.changeTracking,
      'read everything: change tracking is invalid: the image was modified while it was not attached',
    );
    assert.ok(
      (after.warnings as string[]).includes(
        'read the whole volume: change tracking is invalid: the image was modified while it was not attached',
      ),
    );
    await client.call('volumes.detach', { source: image });
  } finally {
    if (mounted) await run('umount', [mnt]).catch(() => undefined);
    await client.call('volumes.detach', { source: image }).catch(() => undefined);
    await client.close();
    await rm(dir, { recursive: true, force: true });
  }
});
