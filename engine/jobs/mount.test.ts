import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { type EngineCallError, InProcessClient } from '../api/client.ts';
import { openEngine } from '../api/host.ts';
import { nativeHelperAvailable } from '../native/index.ts';
import { tapUnavailableReason } from '../tap/system-state.ts';

const run = promisify(execFile);
const skipReason = !nativeHelperAvailable()
  ? 'native helper not built (npm run build)'
  : tapUnavailableReason();

test('mount.start serves a restore point read-only with its files; mount.stop unmounts and removes the directory', {
  skip: skipReason ?? false,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-mount-test-'));
  process.env.DISKLINE_PASSWORD = 'mount test';
  const engine = await openEngine({ stateDir: join(dir, 'state'), schedules: false });
  const client = new InProcessClient(engine);
  let mountedAt: string | null = null;
  try {
    const files = join(dir, 'files');
    await mkdir(files);
    const content = randomBytes(300_000);
    await writeFile(join(files, 'report.bin'), content);
    await run('mkfs.ext4', ['-q', '-F', '-d', files, join(dir, 'disk.img'), '24M']);
    const repo = join(dir, 'repo');
    await client.call('repo.init', { repo });
    const backup = await engine.jobs.waitFor(
      (await client.call('backup.start', { source: join(dir, 'disk.img'), repo })).id,
    );
    assert.equal(backup.state, 'succeeded', backup.error ?? '');

    const { path } = await client.call('mount.start', { repo, point: String(backup.result?.point) });
    mountedAt = path;
    assert.deepEqual(await readFile(join(path, 'report.bin')), content);
    await assert.rejects(writeFile(join(path, 'new.txt'), 'x'), /EROFS|read-only/);

    assert.deepEqual(await client.call('mount.stop', { path }), {});
    mountedAt = null;
    assert.equal(existsSync(path), false, 'the directory the engine made is gone');
    await assert.rejects(
      client.call('mount.stop', { path }),
      (error: EngineCallError) =>
        error.code === 'not-found' && error.message === `No restore point is mounted at ${path}.`,
    );
  } finally {
    if (mountedAt) await client.call('mount.stop', { path: mountedAt }).catch(() => {});
    await client.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('an instant restore serves the target at once, fills it in the background, and equals a plain restore', {
  skip: skipReason ?? false,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-instant-test-'));
  process.env.DISKLINE_PASSWORD = 'instant test';
  const engine = await openEngine({ stateDir: join(dir, 'state'), schedules: false });
  const client = new InProcessClient(engine);
  try {
    const files = join(dir, 'files');
    await mkdir(files);
    await writeFile(join(files, 'a.bin'), randomBytes(500_000));
    await run('mkfs.ext4', ['-q', '-F', '-d', files, join(dir, 'disk.img'), '24M']);
    const repo = join(dir, 'repo');
    await client.call('repo.init', { repo });
    const backup = await engine.jobs.waitFor(
      (await client.call('backup.start', { source: join(dir, 'disk.img'), repo })).id,
    );
    const point = String(backup.result?.point);
    const restoreTo = async (to: string, instant: boolean) => {
      const preview = await client.call('restore.preview', { repo, point, to });
      const job = await client.call('restore.start', {
        repo,
        point,
        to,
        confirmToken: preview.confirmToken,
        instant,
      });
      return engine.jobs.waitFor(job.id);
    };
    const instant = await restoreTo(join(dir, 'instant.img'), true);
    assert.equal(instant.state, 'succeeded', instant.error ?? '');
    assert.match(String(instant.result?.loopDevice), /^\/dev\/loop\d+$/);
    const plain = await restoreTo(join(dir, 'plain.img'), false);
    assert.equal(plain.state, 'succeeded', plain.error ?? '');
    assert.deepEqual(await readFile(join(dir, 'instant.img')), await readFile(join(dir, 'plain.img')));
    await run('e2fsck', ['-n', '-f', join(dir, 'instant.img')]);
  } finally {
    await client.close();
    await rm(dir, { recursive: true, force: true });
  }
});
