// The freeze cannot outlive its owner: the tap helper freezes, and thaws on its own when the engine that asked is
// killed while the file system is frozen, or when the freeze outlives its deadline (the engine is told, so the
// point fails). Needs root, /dev/fuse, loop devices, mkfs.ext4.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { attachVolume } from './attach.ts';
import { FreezeDeadlineError, helperPath } from './helper-channel.ts';
import { stopHelpersUnder } from './helper-registry.ts';
import { tapUnavailableReason } from './system-state.ts';

const run = promisify(execFile);
const skipReason = !existsSync(helperPath) ? 'tap helper not built (npm run build)' : tapUnavailableReason();
const attachModule = fileURLToPath(new URL('./attach.ts', import.meta.url));

// Adopts the attached volume, freezes its mounted file system through the helper, says "frozen" and waits.
const freezerScript = `
const { attachVolume } = await import(process.argv[1]);
const volume = await attachVolume(process.argv[2], { runtimeDir: process.argv[3], partscan: false, adopt: true });
await volume.freeze(process.argv[4], 600000);
process.stdout.write('frozen\\n');
setInterval(() => {}, 1000);
`;

/** Writes and fsyncs a file in `dir` from a child process; resolves with how long that took, in ms. */
function durableWrite(dir: string, name: string): Promise<number> {
  const script = `const fs = require('node:fs'); const t = performance.now();
    const fd = fs.openSync(process.argv[1], 'w'); fs.writeSync(fd, 'x'.repeat(4096)); fs.fsyncSync(fd);
    process.stdout.write(String(performance.now() - t));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script, join(dir, name)]);
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.on('exit', (code) =>
      code === 0 ? resolve(Number(out)) : reject(new Error(`writer exited ${code}`)),
    );
  });
}

async function withMountedVolume(
  body: (paths: { image: string; mnt: string; runtimeDir: string }) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-freeze-'));
  const image = join(dir, 'disk.img');
  const mnt = join(dir, 'mnt');
  const runtimeDir = join(dir, 'taps');
  let mounted = false;
  try {
    await run('truncate', ['-s', '64M', image]);
    await run('mkfs.ext4', ['-q', '-F', image]);
    await mkdir(mnt);
    const volume = await attachVolume(image, { runtimeDir, partscan: false });
    await run('mount', [volume.loopDevice, mnt]);
    mounted = true;
    await volume.release();
    await body({ image, mnt, runtimeDir });
    await run('umount', [mnt]);
    mounted = false;
    const adopted = await attachVolume(image, { runtimeDir, partscan: false, adopt: true });
    await adopted.detach();
  } finally {
    if (mounted) await run('umount', ['-l', mnt]).catch(() => undefined);
    await stopHelpersUnder(runtimeDir);
    await rm(dir, { recursive: true, force: true });
  }
}

test('an engine killed while the file system is frozen: the helper thaws it at once', {
  skip: skipReason ?? false,
  timeout: 120_000,
}, async (t) => {
  await withMountedVolume(async ({ image, mnt, runtimeDir }) => {
    const freezer = spawn(process.execPath, [
      '--input-type=module',
      '-e',
      freezerScript,
      attachModule,
      image,
      runtimeDir,
      mnt,
    ]);
    const exited = new Promise((resolve) => freezer.on('exit', resolve));
    await new Promise<void>((resolve, reject) => {
      freezer.stdout.on('data', (chunk: Buffer) => {
        if (chunk.toString().includes('frozen')) resolve();
      });
      freezer.on('exit', (code) => reject(new Error(`the freezer exited ${code} before freezing`)));
    });
    // A write now waits for the thaw; killing the engine is what thaws.
    const write = durableWrite(mnt, 'after-kill');
    freezer.kill('SIGKILL');
    await exited;
    const waited = await write;
    t.diagnostic(`the write waited ${waited.toFixed(1)} ms (the freeze, then the kill)`);
  });
});

test('a freeze that outlives its deadline is thawed by the helper, and the thaw tells the engine', {
  skip: skipReason ?? false,
  timeout: 120_000,
}, async () => {
  await withMountedVolume(async ({ image, mnt, runtimeDir }) => {
    const volume = await attachVolume(image, { runtimeDir, partscan: false, adopt: true });
    try {
      await volume.freeze(mnt, 300);
      // Nobody thaws: the write completes once the helper's deadline has thawed the file system.
      await durableWrite(mnt, 'after-deadline');
      await assert.rejects(volume.thaw(), FreezeDeadlineError);
      // The next freeze and thaw work as usual.
      await volume.freeze(mnt, 60_000);
      await volume.thaw();
    } finally {
      await volume.release();
    }
  });
});
