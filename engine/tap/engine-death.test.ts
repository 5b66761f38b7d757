// The tap outlives the engine: a daemon serving a mounted ext4 volume is killed with SIGKILL at seeded random
// instants of a backup — before, inside and after the freeze window, and while copying — while a writer keeps
// replacing files with fsync. No write fails, none waits a second longer than writes take on the machine at
// that time, the file system stays read-write, every acknowledged file is intact; the restarted daemon reports
// the interrupted backup, adopts the volume (same loop device, no remount) and its next backup succeeds. DISKLINE_TRIALS=N runs N kills (default 5; the soak: 30);
// DISKLINE_SEED=N replays one run. Needs root, /dev/fuse, loop devices, mkfs.ext4.
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
import { startFsyncWriter } from '../testing/fsync-writer.ts';
import { jobEnded } from '../testing/job-end.ts';
import { mountOptions } from '../testing/mount-options.ts';
import { seededRandom } from '../testing/seeded-random.ts';
import { helperPath } from './helper-channel.ts';
import { stopHelpersUnder } from './helper-registry.ts';
import { loopDevicesBackedBy, tapUnavailableReason } from './system-state.ts';

const run = promisify(execFile);
const skipReason = !existsSync(helperPath) ? 'tap helper not built (npm run build)' : tapUnavailableReason();

test('kill -9 of the engine at random instants of a backup: the mounted volume never notices', {
  skip: skipReason ?? false,
  timeout: 900_000,
}, async (t) => {
  const seed = Number(process.env.DISKLINE_SEED) || Math.floor(Math.random() * 1e9);
  const trials = Number(process.env.DISKLINE_TRIALS) || 5;
  t.diagnostic(`seed ${seed} (replay with DISKLINE_SEED=${seed}), ${trials} trials`);
  const random = seededRandom(seed);
  const dir = await mkdtemp(join(tmpdir(), 'diskline-engine-death-'));
  const image = join(dir, 'disk.img');
  const repo = join(dir, 'repo');
  const mnt = join(dir, 'mnt');
  let daemon: DaemonProcess | null = null;
  let mounted = false;
  let writer: ReturnType<typeof startFsyncWriter> | null = null;
  try {
    await run('truncate', ['-s', '256M', image]);
    await run('mkfs.ext4', ['-q', '-F', image]);
    await mkdir(mnt);
    daemon = await startDaemon(dir);
    await daemon.client.call('repo.init', { repo });
    const { loopDevice } = await daemon.client.call('volumes.attach', { source: image });
    await run('mount', [loopDevice, mnt]);
    mounted = true;
    // Data for the copier, so a kill can land while it copies.
    await run('dd', ['if=/dev/urandom', `of=${join(mnt, 'ballast')}`, 'bs=1M', 'count=48', 'status=none']);
    writer = startFsyncWriter(mnt);
    await writer.moreAcks(20);
    let interrupted = 0;
    // From each kill (as seen here) to the restarted daemon answering: the windows of the engine's death.
    const deaths: { from: number; to: number }[] = [];
    const delays: number[] = [];
    for (let trial = 0; trial < trials; trial++) {
      // From right at the pre-hook (the freeze follows within milliseconds) to well into the copy.
      const delayMs = Math.floor(random() ** 2 * 1500);
      delays.push(delayMs);
      const pid = daemon.child.pid as number;
      const preHook = `(sleep ${delayMs / 1000}; kill -9 ${pid}) >/dev/null 2>&1 &`;
      const backup = await daemon.client.call('backup.start', { source: image, repo, preHook });
      await daemon.exited;
      const killedAt = Date.now();
      // The engine is gone: the writer goes on, on a read-write file system.
      await writer.moreAcks(10);
      assert.match(await mountOptions(mnt), /^rw\b/, `trial ${trial}: the file system stays read-write`);
      daemon = await startDaemon(dir);
      deaths.push({ from: killedAt, to: Date.now() });
      const job = (await daemon.client.call('jobs.list', {})).find((entry) => entry.id === backup.id);
      assert.ok(job && ['interrupted', 'succeeded'].includes(job.state), `trial ${trial}: ${job?.state}`);
      if (job.state === 'interrupted') interrupted++;
      // Attaching again names the volume the daemon already serves: the adopted one, same loop device.
      const again = await daemon.client.call('volumes.attach', { source: image });
      assert.equal(
        again.loopDevice,
        loopDevice,
        `trial ${trial}: the volume is adopted (daemon log: ${daemon.log()})`,
      );
    }
    t.diagnostic(`kills after ${delays.join(', ')} ms; ${interrupted} backups interrupted`);
    const next = await daemon.client.call('backup.start', { source: image, repo });
    const nextJob = await jobEnded(daemon.client, next.id);
    assert.equal(nextJob.state, 'succeeded', nextJob.error ?? '');
    const { acknowledged, waits } = writer;
    const outcome = await writer.stop();
    writer = null;
    // A write in flight when the engine died, or started while it was dead, is what its death could stall.
    const aroundDeaths = waits.filter(({ startedAt, waitedMs }) =>
      deaths.some(({ from, to }) => startedAt <= to && startedAt + waitedMs >= from),
    );
    const longestAroundDeaths = Math.max(0, ...aroundDeaths.map(({ waitedMs }) => waitedMs));
    // What a write takes on this machine now with the engine alive: a busy machine slows every write, and a
    // death may add at most a second to that.
    const longestElsewhere = Math.max(
      0,
      ...waits.filter((wait) => !aroundDeaths.includes(wait)).map(({ waitedMs }) => waitedMs),
    );
    t.diagnostic(
      `writer: ${outcome.count} files; longest write+fsync ${longestAroundDeaths.toFixed(1)} ms across the ` +
        `engine's deaths (${aroundDeaths.length} writes), ${longestElsewhere.toFixed(1)} ms elsewhere`,
    );
    assert.equal(outcome.failure, null, 'no write failed');
    assert.ok(aroundDeaths.length > 0);
    assert.ok(
      longestAroundDeaths < longestElsewhere + 1000,
      `no write waited a second longer for a dead engine than writes take here (longest ${longestAroundDeaths} ms ` +
        `around the deaths, ${longestElsewhere} ms elsewhere)`,
    );
    assert.ok(acknowledged.size > 0);
    for (const [name, sha] of acknowledged) {
      assert.equal(
        createHash('sha256')
          .update(await readFile(join(mnt, name)))
          .digest('hex'),
        sha,
        name,
      );
    }
    await run('umount', [mnt]);
    mounted = false;
    await run('e2fsck', ['-fn', loopDevice]);
    assert.deepEqual(await loopDevicesBackedBy(image), [], 'the image is never attached a second time');
    assert.deepEqual(await daemon.client.call('volumes.detach', { source: image }), {});
  } finally {
    await writer?.stop();
    if (mounted) await run('umount', ['-l', mnt]).catch(() => undefined);
    await daemon?.stop('SIGTERM');
    await stopHelpersUnder(join(dir, 'taps'));
    await rm(dir, { recursive: true, force: true });
  }
});
