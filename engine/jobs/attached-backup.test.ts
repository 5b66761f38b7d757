import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { type EngineCallError, InProcessClient } from '../api/client.ts';
import { openEngine } from '../api/host.ts';
import { nativeHelperAvailable } from '../native/index.ts';
import { tapUnavailableReason } from '../tap/system-state.ts';
import { waitUntil } from '../testing/wait-until.ts';

const run = promisify(execFile);
const skipReason = !nativeHelperAvailable()
  ? 'native helper not built (npm run build)'
  : tapUnavailableReason();

test('a volume attached through the API is backed up while written to: the point is frozen and restores fsck-clean; attachments survive a restart', {
  skip: skipReason ?? false,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-attached-'));
  const image = join(dir, 'disk.img');
  const mountDir = join(dir, 'mnt');
  process.env.DISKLINE_PASSWORD = 'attached test';
  let engine = await openEngine({ stateDir: join(dir, 'state'), schedules: false });
  let client = new InProcessClient(engine);
  let mounted = false;
  let writer: ReturnType<typeof spawn> | null = null;
  try {
    await writeFile(image, '');
    await truncate(image, 64 << 20);
    await run('mkfs.ext4', ['-q', '-F', image]);
    const attached = await client.call('volumes.attach', { source: image });
    assert.match(attached.loopDevice, /^\/dev\/loop\d+$/);
    engine.state.config.images.push(image);
    await engine.state.saveConfig();
    const drive = (await client.call('drives.list', {})).find((candidate) => candidate.device === image);
    assert.equal(drive?.attachedAs, attached.loopDevice);

    await run('mkdir', ['-p', mountDir]);
    await run('mount', ['-t', 'ext4', attached.loopDevice, mountDir]);
    mounted = true;
    // A writer that keeps the file system busy during the backup.
    writer = spawn(
      'sh',
      ['-c', `i=0; while :; do head -c 200000 /dev/urandom > ${mountDir}/f$((i % 20)); i=$((i+1)); done`],
      {
        stdio: 'ignore',
      },
    );
    // Busy once it has written its second file.
    await waitUntil('the writer is writing', () => existsSync(join(mountDir, 'f1')));
    await assert.rejects(
      client.call('volumes.detach', { source: image }),
      (error: EngineCallError) => error.code === 'refused' && error.message.includes('is mounted on'),
    );

    const repo = join(dir, 'repo');
    await client.call('repo.init', { repo });
    const backup = await engine.jobs.waitFor((await client.call('backup.start', { source: image, repo })).id);
    const ontoItself = await client.call('restore.preview', {
      repo,
      point: String(backup.result?.point),
      to: image,
    });
    assert.equal(
      ontoItself.refusal,
      `${image} is attached as ${attached.loopDevice} and may be in use through it; detach it (volumes.detach), then ask for a new preview.`,
    );
    assert.equal(backup.state, 'succeeded', backup.error ?? '');
    assert.equal(backup.result?.consistency, 'frozen');
    assert.deepEqual(backup.result?.frozen, [mountDir]);

    writer.kill();
    writer = null;
    const restored = join(dir, 'restored.img');
    const preview = await client.call('restore.preview', {
      repo,
      point: String(backup.result?.point),
      to: restored,
    });
    const restore = await engine.jobs.waitFor(
      (
        await client.call('restore.start', {
          repo,
          point: String(backup.result?.point),
          to: restored,
          confirmToken: preview.confirmToken,
        })
      ).id,
    );
    assert.equal(restore.state, 'succeeded', restore.error ?? '');
    await run('e2fsck', ['-n', '-f', restored]);

    await run('umount', [mountDir]);
    mounted = false;
    // A restarted engine serves the volume again.
    await client.close();
    engine = await openEngine({ stateDir: join(dir, 'state'), schedules: false });
    client = new InProcessClient(engine);
    assert.deepEqual(engine.startNotes, []);
    const again = (await client.call('drives.list', {})).find((candidate) => candidate.device === image);
    assert.match(again?.attachedAs ?? '', /^\/dev\/loop\d+$/);
    assert.deepEqual(await client.call('volumes.detach', { source: image }), {});
    assert.deepEqual(engine.state.config.attached, []);
  } finally {
    writer?.kill();
    if (mounted) await run('umount', ['-l', mountDir]).catch(() => {});
    await client.close();
    await rm(dir, { recursive: true, force: true });
  }
});
