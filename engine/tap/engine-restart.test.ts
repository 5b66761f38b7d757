// An upgrade with volumes in use: `diskline daemon` stopped with SIGTERM and started again, with two volumes
// attached, mounted and written with fsync. They stay mounted and writable throughout (the tap helpers serve them
// while no daemon runs), the restarted daemon adopts both on their loop devices, and change tracking carried across
// the restarts is either trusted and right (the incremental point restores to exactly the files) or declared
// invalid — never wrongly trusted. DISKLINE_RESTARTS=N restarts N times (default 3; the proof: 10).
// Needs root, /dev/fuse, loop devices, mkfs.ext4.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { type DaemonProcess, startDaemon } from '../testing/daemon-process.ts';
import { type FsyncWriter, startFsyncWriter } from '../testing/fsync-writer.ts';
import { jobEnded } from '../testing/job-end.ts';
import { mountOptions } from '../testing/mount-options.ts';
import { helperPath } from './helper-channel.ts';
import { stopHelpersUnder } from './helper-registry.ts';
import { tapUnavailableReason } from './system-state.ts';

const run = promisify(execFile);
const skipReason = !existsSync(helperPath) ? 'tap helper not built (npm run build)' : tapUnavailableReason();

async function isReadWrite(mountPoint: string): Promise<boolean> {
  return /^rw\b/.test(await mountOptions(mountPoint));
}

async function checksums(dir: string, names: Iterable<string>): Promise<Map<string, string>> {
  const sums = new Map<string, string>();
  for (const name of names)
    sums.set(
      name,
      createHash('sha256')
        .update(await readFile(join(dir, name)))
        .digest('hex'),
    );
  return sums;
}

test('SIGTERM and restart of the daemon with two mounted volumes: they stay writable and are adopted', {
  skip: skipReason ?? false,
  timeout: 600_000,
}, async (t) => {
  const restarts = Number(process.env.DISKLINE_RESTARTS) || 3;
  const dir = await mkdtemp(join(tmpdir(), 'diskline-restart-tap-'));
  const repo = join(dir, 'repo');
  const volumes = ['a', 'b'].map((name) => ({
    image: join(dir, `${name}.img`),
    mnt: join(dir, `mnt-${name}`),
    loopDevice: '',
    mounted: false,
    writer: null as FsyncWriter | null,
  }));
  let daemon: DaemonProcess | null = null;
  try {
    for (const volume of volumes) {
      await run('truncate', ['-s', '64M', volume.image]);
      await run('mkfs.ext4', ['-q', '-F', volume.image]);
      await mkdir(volume.mnt);
    }
    daemon = await startDaemon(dir);
    await daemon.client.call('repo.init', { repo });
    for (const volume of volumes) {
      volume.loopDevice = (await daemon.client.call('volumes.attach', { source: volume.image })).loopDevice;
      await run('mount', [volume.loopDevice, volume.mnt]);
      volume.mounted = true;
      volume.writer = startFsyncWriter(volume.mnt);
    }
    const [first] = volumes as [(typeof volumes)[0]];
    // The parent point of the incremental backup at the end.
    const parent = await daemon.client.call('backup.start', { source: first.image, repo });
    assert.equal((await jobEnded(daemon.client, parent.id)).state, 'succeeded');

    for (let restart = 0; restart < restarts; restart++) {
      await daemon.stop('SIGTERM');
      daemon = null;
      // No daemon: both volumes keep taking fsynced writes on read-write file systems.
      for (const volume of volumes) {
        await volume.writer?.moreAcks(5);
        assert.ok(await isReadWrite(volume.mnt), `restart ${restart}: ${volume.mnt} is read-write`);
      }
      daemon = await startDaemon(dir);
      for (const volume of volumes) {
        const again: { loopDevice: string } = await daemon.client.call('volumes.attach', {
          source: volume.image,
        });
        assert.equal(again.loopDevice, volume.loopDevice, `restart ${restart}: adopted (${daemon.log()})`);
      }
    }

    let longest = 0;
    for (const volume of volumes) {
      const outcome = await volume.writer?.stop();
      volume.writer = null;
      assert.equal(outcome?.failure, null, `no write failed on ${volume.mnt}`);
      longest = Math.max(longest, outcome?.maxWaitMs ?? 0);
    }
    t.diagnostic(`${restarts} restarts; longest write+fsync ${longest.toFixed(1)} ms`);

    // Tracking across the restarts: the incremental point holds exactly the files as they are now.
    await run('sync', ['-f', first.mnt]);
    const names = (await run('ls', [first.mnt])).stdout.split('\n').filter((name) => /^f\d+$/.test(name));
    const expected = await checksums(first.mnt, names);
    const next = await daemon.client.call('backup.start', { source: first.image, repo });
    const nextJob = await jobEnded(daemon.client, next.id);
    assert.equal(nextJob.state, 'succeeded', nextJob.error ?? '');
    t.diagnostic(`incremental backup: ${nextJob.result?.changeTracking}`);
    assert.match(String(nextJob.result?.changeTracking), /^read only the changed blocks$|^read everything: /);
    const restored = join(dir, 'restored.img');
    const point = String(nextJob.result?.point);
    const preview = await daemon.client.call('restore.preview', { repo, point, to: restored });
    const restore = await daemon.client.call('restore.start', {
      repo,
      point,
      to: restored,
      confirmToken: preview.confirmToken,
    });
    assert.equal((await jobEnded(daemon.client, restore.id)).state, 'succeeded');
    await run('e2fsck', ['-fn', restored]);
    const restoredMnt = join(dir, 'restored');
    await mkdir(restoredMnt);
    await run('mount', ['-o', 'loop,ro', restored, restoredMnt]);
    try {
      assert.deepEqual(await checksums(restoredMnt, names), expected);
    } finally {
      await run('umount', [restoredMnt]);
    }
    for (const volume of volumes) {
      await run('umount', [volume.mnt]);
      volume.mounted = false;
      assert.deepEqual(await daemon.client.call('volumes.detach', { source: volume.image }), {});
    }
  } finally {
    for (const volume of volumes) {
      await volume.writer?.stop();
      if (volume.mounted) await run('umount', ['-l', volume.mnt]).catch(() => undefined);
    }
    await daemon?.stop('SIGTERM');
    await stopHelpersUnder(join(dir, 'taps'));
    await rm(dir, { recursive: true, force: true });
  }
});
