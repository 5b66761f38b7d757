// The tap under real file systems: an image attached through our FUSE file and a loop device, ext4 mounted
// on it, writes intercepted per unit while armed, changed blocks tracked and persisted, detach refused while
// mounted. Needs root, /dev/fuse and loop devices; skips saying which is missing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { nativeHelperAvailable } from '../native/index.ts';
import { attachVolume, TapRefusedError } from './attach.ts';
import { tapUnavailableReason } from './system-state.ts';

const run = promisify(execFile);
const skipReason = !nativeHelperAvailable()
  ? 'native helper not built (npm run build)'
  : tapUnavailableReason();
const MiB = 1024 * 1024;

async function withDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-tap-test-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('an ext4 image attached through the tap mounts, keeps files, and detaches cleanly', {
  skip: skipReason ?? false,
}, async () => {
  await withDir(async (dir) => {
    const image = join(dir, 'disk.img');
    await run('truncate', ['-s', '64M', image]);
    await run('mkfs.ext4', ['-q', '-F', image]);
    const volume = await attachVolume(image, { trackingDir: join(dir, 'tracking') });
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    let mounted = false;
    try {
      assert.match(volume.loopDevice, /^\/dev\/loop\d+$/);
      await run('mount', [volume.loopDevice, mnt]);
      mounted = true;
      assert.deepEqual(await volume.mountPoints(), [mnt]);
      const content = Buffer.alloc(3 * MiB, 7);
      await writeFile(join(mnt, 'file'), content);
      await run('sync');
      await assert.rejects(
        volume.detach(),
        (error: Error) => error instanceof TapRefusedError && /is mounted on/.test(error.message),
      );
      await run('umount', [mnt]);
      mounted = false;
      assert.ok((await volume.stats()).bytesWritten >= 3 * MiB);
      await volume.detach();
      const { stdout } = await run('e2fsck', ['-fn', image]);
      assert.match(stdout, /clean|files/);
      // The file is really in the image: mount it directly.
      await run('mount', ['-o', 'loop,ro', image, mnt]);
      mounted = true;
      assert.ok((await readFile(join(mnt, 'file'))).equals(content));
    } finally {
      if (mounted) await run('umount', [mnt]);
      await volume.detach().catch(() => undefined);
    }
  });
});

test('while armed, only the first write to each unit waits for the interceptor; tracking records every write', {
  skip: skipReason ?? false,
}, async () => {
  await withDir(async (dir) => {
    const image = join(dir, 'raw.img');
    await run('truncate', ['-s', '16M', image]);
    const volume = await attachVolume(image, { trackingDir: join(dir, 'tracking'), partscan: false });
    try {
      const asked: Array<[number, number]> = [];
      const unit = 64 * 1024;
      const first = await volume.setInterceptor(
        {
          async beforeWrite(offset, length) {
            asked.push([offset, length]);
            await new Promise((resolve) => setTimeout(resolve, 5));
          },
        },
        unit,
        { resetTracking: true },
      );
      assert.equal(first?.valid, false);
      assert.match(first?.reason ?? '', /no change-tracking record/);
      // 4 KiB writes: 3 in unit 2, 1 in unit 5; then again the same.
      const device = await open(volume.loopDevice, 'r+');
      try {
        for (const offset of [
          2 * unit,
          2 * unit + 4096,
          2 * unit + 8192,
          5 * unit,
          2 * unit,
          5 * unit + 4096,
        ]) {
          await device.write(Buffer.alloc(4096, 1), 0, 4096, offset);
          await device.datasync();
        }
      } finally {
        await device.close();
      }
      assert.deepEqual(
        asked.map(([offset]) => Math.floor(offset / unit)),
        [2, 5],
      );
      const status = await volume.changedRanges();
      assert.equal(status.valid, true);
      assert.deepEqual(status.ranges, [
        { start: 2 * unit, length: unit },
        { start: 5 * unit, length: unit },
      ]);
      // A new generation starts empty.
      const second = await volume.setInterceptor(null, unit, { resetTracking: true });
      assert.equal(second?.valid, true);
      assert.equal(second?.baseGeneration, first?.newGeneration);
      assert.deepEqual((await volume.changedRanges()).ranges, []);
    } finally {
      await volume.detach();
    }
  });
});

test('tracking survives a clean detach and is refused after writes that bypassed the tap', {
  skip: skipReason ?? false,
}, async () => {
  await withDir(async (dir) => {
    const image = join(dir, 'raw.img');
    const trackingDir = join(dir, 'tracking');
    await run('truncate', ['-s', '16M', image]);
    let volume = await attachVolume(image, { trackingDir, partscan: false });
    const start = await volume.setInterceptor(null, 65536, { resetTracking: true });
    let device = await open(volume.loopDevice, 'r+');
    await device.write(Buffer.alloc(4096, 2), 0, 4096, 3 * MiB);
    await device.datasync();
    await device.close();
    await volume.detach();

    volume = await attachVolume(image, { trackingDir, partscan: false });
    device = await open(volume.loopDevice, 'r+');
    await device.write(Buffer.alloc(4096, 3), 0, 4096, 5 * MiB);
    await device.datasync();
    await device.close();
    const carried = await volume.setInterceptor(null, 65536, { resetTracking: true });
    assert.equal(carried?.valid, true, carried?.reason);
    assert.equal(carried?.baseGeneration, start?.newGeneration);
    assert.deepEqual(carried?.ranges, [
      { start: 3 * MiB, length: 65536 },
      { start: 5 * MiB, length: 65536 },
    ]);
    await volume.detach();

    // Someone writes the image directly, at once after the detach: within the file system's timestamp tick,
    // so the write's mtime can equal the one the detach read. Seen every time all the same.
    for (let round = 0; round < 5; round++) {
      // A new generation, valid from here, released by a clean detach.
      volume = await attachVolume(image, { trackingDir, partscan: false });
      await volume.setInterceptor(null, 65536, { resetTracking: true });
      await volume.detach();
      const direct = await open(image, 'r+');
      await direct.write(Buffer.alloc(512, 9 + round), 0, 512, 0);
      await direct.close();
      volume = await attachVolume(image, { trackingDir, partscan: false });
      try {
        const status = await volume.changedRanges();
        assert.equal(status.valid, false, `round ${round}`);
        assert.equal(status.reason, 'the image was modified while it was not attached');
      } finally {
        await volume.detach();
      }
    }
  });
});

test('attaching a mounted block device is refused, saying where it is mounted', {
  skip: skipReason ?? false,
}, async () => {
  await withDir(async (dir) => {
    const image = join(dir, 'fs.img');
    await run('truncate', ['-s', '32M', image]);
    await run('mkfs.ext4', ['-q', '-F', image]);
    const { stdout } = await run('losetup', ['--find', '--show', image]);
    const loop = stdout.trim();
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    await run('mount', [loop, mnt]);
    try {
      await assert.rejects(attachVolume(loop), {
        name: 'Error',
        message: `cannot attach ${loop}: ${loop} is mounted on ${mnt}; unmount it first, then mount the loop device the attach prints`,
      });
    } finally {
      await run('umount', [mnt]);
      await run('losetup', ['-d', loop]);
    }
  });
});

test('a write waits as long as the interceptor holds it (suspension), and lands once released', {
  skip: skipReason ?? false,
}, async () => {
  await withDir(async (dir) => {
    const image = join(dir, 'raw.img');
    await run('truncate', ['-s', '4M', image]);
    const volume = await attachVolume(image, { partscan: false });
    try {
      let release: () => void = () => {};
      let asked = 0;
      let reachedTap: () => void = () => {};
      const reached = new Promise<void>((resolve) => (reachedTap = resolve));
      await volume.setInterceptor(
        {
          beforeWrite: () => {
            asked++;
            reachedTap();
            return new Promise<void>((resolve) => {
              release = resolve;
            });
          },
        },
        65536,
      );
      // The writer is another process: this one must stay free to answer the tap.
      const block = join(dir, 'block');
      await writeFile(block, Buffer.alloc(4096, 0xab));
      const writer = execFile('dd', [
        `if=${block}`,
        `of=${volume.loopDevice}`,
        'bs=4k',
        'count=1',
        'seek=16',
        'oflag=direct,dsync',
        'status=none',
      ]);
      const done = new Promise((resolve) => writer.on('exit', resolve));
      let finished = false;
      done.then(() => {
        finished = true;
      });
      // The write has reached the tap: from here until the release, it neither completes nor lands.
      await reached;
      assert.equal(asked, 1);
      assert.equal(finished, false, 'the write is held while the interceptor has not resolved');
      const meanwhile = (await readFile(image)).subarray(16 * 4096, 17 * 4096);
      assert.ok(meanwhile.equals(Buffer.alloc(4096)), 'nothing landed while held');
      assert.equal(finished, false);
      release();
      assert.equal(await done, 0);
      assert.equal((await volume.stats()).interceptedCalls, 1);
      const landed = (await readFile(image)).subarray(16 * 4096, 17 * 4096);
      assert.ok(
        landed.equals(Buffer.alloc(4096, 0xab)),
        `block 16 holds ${landed.subarray(0, 8).toString('hex')}`,
      );
    } finally {
      await volume.detach();
    }
  });
});

test('a partitioned image: partitions appear on the loop device, and detach is refused while one is mounted', {
  skip: skipReason ?? false,
}, async () => {
  await withDir(async (dir) => {
    const image = join(dir, 'parted.img');
    await run('truncate', ['-s', '48M', image]);
    const table = 'label: gpt\n,20M\n,\n';
    await new Promise<void>((resolve, reject) => {
      const sfdisk = execFile('sfdisk', ['--quiet', image], (error) => (error ? reject(error) : resolve()));
      sfdisk.stdin?.end(table);
    });
    const volume = await attachVolume(image, { partscan: true });
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    let mounted = false;
    try {
      assert.deepEqual(volume.partitions, [`${volume.loopDevice}p1`, `${volume.loopDevice}p2`]);
      const partition = volume.partitions[1] as string;
      await run('mkfs.ext4', ['-q', '-F', partition]);
      await run('mount', [partition, mnt]);
      mounted = true;
      assert.deepEqual(await volume.mountPoints(), [mnt]);
      await assert.rejects(volume.detach(), /is mounted on/);
      await run('umount', [mnt]);
      mounted = false;
      await volume.detach();
    } finally {
      if (mounted) await run('umount', [mnt]);
      await volume.detach().catch(() => undefined);
    }
  });
});
