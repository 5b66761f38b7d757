// Instant restore: the target is usable at once — mounted and read while the copier is still far from done,
// written to (writes land on restored units) — and ends up fsck-clean with the original files plus the new one.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { nativeHelperAvailable } from '../native/index.ts';
import { Repository } from '../repository/repository.ts';
import { startInstantRestore } from './instant-restore.ts';
import { journalPathFor } from './restore-journal.ts';
import { tapUnavailableReason } from './system-state.ts';

const run = promisify(execFile);
const skipReason = !nativeHelperAvailable()
  ? 'native helper not built (npm run build)'
  : tapUnavailableReason();
const cli = fileURLToPath(new URL('../cli/main.ts', import.meta.url));
const MiB = 1024 * 1024;

test('instant restore: the target mounts and serves the point before the copier is done, and keeps new writes', {
  skip: skipReason ?? false,
  timeout: 90_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-instant-'));
  const env = { ...process.env, DISKLINE_PASSWORD: 'instant test' };
  const mnt = join(dir, 'mnt');
  let mounted = false;
  try {
    const image = join(dir, 'disk.img');
    await run('truncate', ['-s', '64M', image]);
    await run('mkfs.ext4', ['-q', '-F', image]);
    await mkdir(mnt);
    await run('mount', ['-o', 'loop', image, mnt]);
    const content = Buffer.alloc(4 * MiB);
    for (let i = 0; i < content.length; i += 4) content.writeUInt32LE((i * 40503) >>> 0, i);
    await writeFile(join(mnt, 'data.bin'), content);
    await writeFile(join(mnt, 'note.txt'), 'before the backup\n');
    await run('umount', [mnt]);
    const repo = join(dir, 'repo');
    await run(process.execPath, [cli, 'init', '--repo', repo], { env });
    await run(process.execPath, [cli, 'backup', image, '--repo', repo], { env });

    const repository = await Repository.open(repo, { password: 'instant test' });
    const point = await repository.openPoint(await repository.resolvePointId('latest'));
    const target = join(dir, 'restored.img');
    // The copier alone would need ~8 s: everything below happens long before it is done.
    const restore = await startInstantRestore(point, target, {
      partscan: false,
      copyBytesPerSecond: 8 * MiB,
    });
    try {
      await run('mount', [restore.loopDevice, mnt]);
      mounted = true;
      const early = restore.progress();
      assert.ok(!early.complete && early.restoredUnits < early.totalUnits);
      assert.ok((await readFile(join(mnt, 'data.bin'))).equals(content));
      assert.equal(await readFile(join(mnt, 'note.txt'), 'utf8'), 'before the backup\n');
      await writeFile(join(mnt, 'note.txt'), 'written during the restore\n');
      await writeFile(join(mnt, 'new.bin'), content.subarray(0, MiB));
      await run('sync');
      assert.ok(restore.progress().onDemandUnits > 0, 'units were restored on demand');
      await run('umount', [mnt]);
      mounted = false;
      await restore.whenComplete;
      assert.equal(restore.progress().complete, true);
      await restore.detach();
      await run('e2fsck', ['-fn', target]);
      await run('mount', ['-o', 'loop,ro', target, mnt]);
      mounted = true;
      assert.ok((await readFile(join(mnt, 'data.bin'))).equals(content));
      assert.equal(await readFile(join(mnt, 'note.txt'), 'utf8'), 'written during the restore\n');
      assert.ok((await readFile(join(mnt, 'new.bin'))).equals(content.subarray(0, MiB)));
    } finally {
      if (mounted) await run('umount', [mnt]);
      mounted = false;
      await restore.detach().catch(() => undefined);
      await repository.close();
    }
  } finally {
    if (mounted) await run('umount', [mnt]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
});

test('diskline restore --instant serves the target at once and finishes with a byte-equal image', {
  skip: skipReason ?? false,
  timeout: 90_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-instant-cli-'));
  const env = { ...process.env, DISKLINE_PASSWORD: 'instant cli' };
  const mnt = join(dir, 'mnt');
  try {
    const image = join(dir, 'disk.img');
    await run('truncate', ['-s', '32M', image]);
    await run('mkfs.ext4', ['-q', '-F', image]);
    await mkdir(mnt);
    await run('mount', ['-o', 'loop', image, mnt]);
    await writeFile(join(mnt, 'a.txt'), 'restored on the fly\n');
    await run('umount', [mnt]);
    const repo = join(dir, 'repo');
    await run(process.execPath, [cli, 'init', '--repo', repo], { env });
    await run(process.execPath, [cli, 'backup', image, '--repo', repo], { env });
    const target = join(dir, 'target.img');
    const { spawn } = await import('node:child_process');
    const child = spawn(
      process.execPath,
      [cli, 'restore', 'latest', '--repo', repo, '--to', target, '--instant', '--json'],
      { env },
    );
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const started = await new Promise<{ loopDevice: string }>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += chunk;
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0] as string));
      });
      child.on('exit', (code) => reject(new Error(`restore exited ${code}: ${stderr}`)));
    });
    await run('mount', ['-o', 'ro,noload', started.loopDevice, mnt]);
    try {
      assert.equal(await readFile(join(mnt, 'a.txt'), 'utf8'), 'restored on the fly\n');
    } finally {
      await run('umount', [mnt]);
    }
    assert.equal(await exited, 0, stderr);
    assert.ok(
      (await readFile(target)).equals(await readFile(image)),
      'the restored image equals the original',
    );
  } finally {
    await run('umount', [mnt]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
});

test('an interrupted instant restore resumes from its journal and keeps what was written meanwhile', {
  skip: skipReason ?? false,
  timeout: 90_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-instant-resume-'));
  const env = { ...process.env, DISKLINE_PASSWORD: 'instant test' };
  try {
    const image = join(dir, 'disk.img');
    const source = Buffer.alloc(16 * MiB);
    for (let i = 0; i < source.length; i += 4) source.writeUInt32LE((i * 2654435761) >>> 0, i);
    await writeFile(image, source);
    const repo = join(dir, 'repo');
    await run(process.execPath, [cli, 'init', '--repo', repo], { env });
    await run(process.execPath, [cli, 'backup', image, '--repo', repo], { env });
    const repository = await Repository.open(repo, { password: 'instant test' });
    try {
      const point = await repository.openPoint(await repository.resolvePointId('latest'));
      const target = join(dir, 'restored.img');
      const first = await startInstantRestore(point, target, {
        partscan: false,
        copyBytesPerSecond: 2 * MiB,
      });
      // A user writes 4 KiB near the end, long before the copier gets there (from another process: the tap
      // answers on this one's event loop).
      const marker = Buffer.alloc(4096, 0x5a);
      const markerFile = join(dir, 'marker');
      await writeFile(markerFile, marker);
      const markerOffset = 12 * MiB + 4096;
      await run('dd', [
        `if=${markerFile}`,
        `of=${first.loopDevice}`,
        'bs=4096',
        `seek=${markerOffset / 4096}`,
        'oflag=direct',
        'conv=notrunc',
        'status=none',
      ]);
      const stoppedAt = first.progress();
      assert.ok(!stoppedAt.complete && stoppedAt.onDemandUnits > 0);
      await assert.rejects(first.detach(), /is only partly restored/);
      assert.ok(existsSync(journalPathFor(target, false)), 'the journal outlives the interrupted run');

      const second = await startInstantRestore(point, target, { partscan: false });
      assert.ok(
        second.progress().resumedUnits >= stoppedAt.restoredUnits,
        'restored units are not fetched again',
      );
      await second.whenComplete;
      await second.detach();
      const restored = await readFile(target);
      assert.ok(
        restored.subarray(markerOffset, markerOffset + 4096).equals(marker),
        'the user write is kept',
      );
      const expected = Buffer.from(source);
      marker.copy(expected, markerOffset);
      assert.ok(restored.equals(expected), 'every other byte is the point');
      assert.ok(!existsSync(journalPathFor(target, false)), 'a finished restore leaves no journal');
    } finally {
      await repository.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
