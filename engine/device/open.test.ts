import assert from 'node:assert/strict';
import { randomBytes, randomFillSync } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { allocAligned } from '../native/index.ts';
import { withTestDisk } from '../testing/disk.ts';
import { withMount } from '../testing/filesystems.ts';
import { MiB, withTempDir } from '../testing/image.ts';
import { attachLoopRange, withLoop } from '../testing/loop.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';
import { DeviceRefusedError } from './errors.ts';
import { openReader, openWriter } from './open.ts';

test('an image file reads back byte for byte, shorter only at its end', async () => {
  await withTempDir(async (dir) => {
    const content = randomBytes(3 * MiB + 1234);
    const image = join(dir, 'a.img');
    await writeFile(image, content);
    const reader = await openReader(image);
    try {
      assert.equal(reader.size, content.length);
      assert.deepEqual(await reader.read(0, 4096), content.subarray(0, 4096));
      assert.deepEqual(await reader.read(777, 2 * MiB + 5), content.subarray(777, 777 + 2 * MiB + 5));
      assert.deepEqual(await reader.read(content.length - 10, 4096), content.subarray(content.length - 10));
      assert.equal((await reader.read(content.length + 5, 10)).length, 0);
    } finally {
      await reader.close();
    }
  });
});

test('a directory is refused as a disk with a message that says what to give', async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(openReader(dir), /neither a disk image file nor a block device/);
  });
});

test('a block device reads the same bytes as its image at unaligned offsets (O_DIRECT when available)', async (t) => {
  const skip = loopUnavailableReason();
  if (skip) return t.skip(skip);
  await withTempDir(async (dir) => {
    const content = randomBytes(4 * MiB);
    const image = join(dir, 'b.img');
    await writeFile(image, content);
    const loop = await attachLoopRange(image, 0, content.length);
    try {
      const reader = await openReader(loop.device);
      try {
        assert.equal(reader.size, content.length);
        assert.equal(reader.logicalSectorSize, 512);
        assert.deepEqual(await reader.read(513, 10_000), content.subarray(513, 10_513));
        assert.deepEqual(await reader.read(0, content.length), content);
      } finally {
        await reader.close();
      }
    } finally {
      await loop.detach();
    }
  });
});

test('readInto fills its own aligned buffers and any other buffer with the same bytes as read', async (t) => {
  const skip = loopUnavailableReason();
  if (skip) return t.skip(skip);
  await withTempDir(async (dir) => {
    const content = randomBytes(4 * MiB + 1536);
    const image = join(dir, 'c.img');
    await writeFile(image, content);
    const loop = await attachLoopRange(image, 0, content.length);
    try {
      for (const path of [image, loop.device]) {
        const reader = await openReader(path);
        try {
          const own = reader.allocateReadBuffer!(MiB);
          assert.equal(await reader.readInto!(own, MiB), MiB, path);
          assert.deepEqual(own, content.subarray(MiB, 2 * MiB), `${path}: aligned read into its own buffer`);
          const plain = Buffer.alloc(10_000);
          assert.equal(await reader.readInto!(plain, 513), 10_000);
          assert.deepEqual(
            plain,
            content.subarray(513, 10_513),
            `${path}: unaligned read into a plain buffer`,
          );
          // At the end of the device the count is shorter and only that much is filled.
          assert.equal(await reader.readInto!(own, 4 * MiB), 1536, path);
          assert.deepEqual(own.subarray(0, 1536), content.subarray(4 * MiB), `${path}: the tail`);
          assert.equal(await reader.readInto!(own, content.length), 0, path);
        } finally {
          await reader.close();
        }
      }
    } finally {
      await loop.detach();
    }
  });
});

test('openWriter creates an image of the minimum size and extends a smaller one sparsely', async () => {
  await withTempDir(async (dir) => {
    const target = join(dir, 'restore.img');
    const writer = await openWriter(target, { minSize: 8 * MiB });
    await writer.write(MiB, Buffer.from('hello'));
    await writer.flush();
    await writer.close();
    assert.equal((await stat(target)).size, 8 * MiB);
    assert.equal((await readFile(target)).subarray(MiB, MiB + 5).toString(), 'hello');
    const again = await openWriter(target, { minSize: 16 * MiB });
    await again.close();
    assert.equal((await stat(target)).size, 16 * MiB);
  });
});

test('openWriter writes the same bytes from aligned and unaligned memory, at aligned and odd offsets, with tails', async () => {
  await withTempDir(async (dir) => {
    // An image on this file system (direct writes where it allows them) and one in RAM (tmpfs refuses them).
    for (const target of [join(dir, 'mixed.img'), '/dev/shm/diskline-open-test.img']) {
      const expected = Buffer.alloc(4 * MiB);
      const writer = await openWriter(target, { minSize: expected.length });
      try {
        const aligned = allocAligned(MiB + 4096);
        const writes: [number, Buffer][] = [
          [0, Buffer.from(aligned, 0, MiB)], // aligned memory, aligned offset: direct where possible
          [MiB, Buffer.from(aligned, 4096, 64 * 1024 + 100)], // aligned, with a tail of 100 bytes
          [2 * MiB + 512, Buffer.from(aligned, 0, 8192)], // an offset off the page boundary
          [3 * MiB, randomBytes(64 * 1024).subarray(1)], // memory off the boundary
        ];
        for (const [offset, data] of writes) {
          randomFillSync(data);
          await writer.write(offset, data);
          data.copy(expected, offset);
        }
        await writer.flush();
      } finally {
        await writer.close();
      }
      assert.ok((await readFile(target)).equals(expected));
      await rm(target, { force: true });
    }
  });
});

test('openWriter refuses a device smaller than the restore needs', async (t) => {
  const skip = loopUnavailableReason();
  if (skip) return t.skip(skip);
  await withTempDir(async (dir) => {
    const image = join(dir, 'small.img');
    await writeFile(image, Buffer.alloc(4 * MiB));
    const loop = await attachLoopRange(image, 0, 4 * MiB);
    try {
      await assert.rejects(openWriter(loop.device, { minSize: 8 * MiB }), (error: Error) => {
        assert.ok(error instanceof DeviceRefusedError);
        assert.match(error.message, /holds 4194304 bytes but the restore point needs 8388608/);
        return true;
      });
    } finally {
      await loop.detach();
    }
  });
});

test('openWriter refuses a disk while one of its partitions is mounted, and names the mount', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('sfdisk', 'mkfs.ext4', 'partx');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 32 * MiB, table: 'gpt', partitions: [{ size: 16 * MiB, filesystem: 'ext4' }] },
    async (disk) => {
      await withLoop(disk.image, async (loop) => {
        await withMount(loop.partitions[0]!, 'ext4', async (mountDir) => {
          await assert.rejects(openWriter(loop.device, { minSize: 0 }), (error: Error) => {
            assert.ok(error instanceof DeviceRefusedError);
            assert.equal(error.kind, 'refusal');
            assert.ok(
              error.message.includes(`${loop.partitions[0]} is mounted on ${mountDir}`),
              error.message,
            );
            return true;
          });
          await assert.rejects(openWriter(loop.partitions[0]!, { minSize: 0 }), DeviceRefusedError);
        });
        const writer = await openWriter(loop.device, { minSize: disk.size });
        await writer.close();
      });
    },
  );
});

test('openWriter refuses an image file whose loop device is mounted', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('mkfs.ext4');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 16 * MiB, table: 'none', partitions: [{ filesystem: 'ext4' }] },
    async (disk) => {
      const loop = await attachLoopRange(disk.image, 0, disk.size);
      try {
        await withMount(loop.device, 'ext4', async (mountDir) => {
          await assert.rejects(openWriter(disk.image, { minSize: disk.size }), (error: Error) => {
            assert.ok(error instanceof DeviceRefusedError);
            assert.ok(
              error.message.includes(
                `it backs ${loop.device}, which is in use (${loop.device} is mounted on ${mountDir})`,
              ),
              error.message,
            );
            return true;
          });
        });
        // Attached but not mounted: a restore target like any other.
        const writer = await openWriter(disk.image, { minSize: disk.size });
        await writer.close();
      } finally {
        await loop.detach();
      }
    },
  );
});

test('openWriter refuses a device that is an active swap area', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('mkswap', 'swapon', 'swapoff');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 16 * MiB, table: 'none', partitions: [{ filesystem: 'swap' }] },
    async (disk) => {
      const loop = await attachLoopRange(disk.image, 0, disk.size);
      try {
        try {
          await runTool('swapon', [loop.device]);
        } catch (error) {
          return t.skip(`swapon is not allowed here: ${(error as Error).message}`);
        }
        try {
          await assert.rejects(openWriter(loop.device, { minSize: 0 }), (error: Error) => {
            assert.ok(error instanceof DeviceRefusedError);
            assert.ok(error.message.includes(`${loop.device} is an active swap area`), error.message);
            return true;
          });
        } finally {
          await runTool('swapoff', [loop.device]);
        }
      } finally {
        await loop.detach();
      }
    },
  );
});
