import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { test } from 'node:test';
import { withTestDisk } from './disk.ts';
import { checkFilesystem, readFilesystemChecksums, withMount } from './filesystems.ts';
import { MiB } from './image.ts';
import { attachLoopRange, withLoop } from './loop.ts';
import { loopUnavailableReason, missingToolReason, runTool } from './tools.ts';

test('a GPT test disk holds an ext4 and a FAT32 partition whose files read back with their checksums', async (t) => {
  const skip =
    loopUnavailableReason() ?? missingToolReason('sfdisk', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'partx');
  if (skip) return t.skip(skip);
  await withTestDisk(
    {
      size: 128 * MiB,
      table: 'gpt',
      partitions: [
        { size: 48 * MiB, filesystem: 'ext4', fill: { files: 12, deletedFiles: 3 } },
        { filesystem: 'fat32', fill: { files: 6 } },
      ],
    },
    async (disk) => {
      assert.equal(disk.partitions.length, 2);
      assert.equal(disk.partitions[0]!.start, 1 * MiB);
      assert.equal(disk.partitions[0]!.size, 48 * MiB);
      assert.equal(disk.partitions[0]!.files.size, 12);
      await withLoop(disk.image, async (loop) => {
        assert.equal(loop.partitions.length, 2);
        for (const [i, part] of disk.partitions.entries()) {
          await checkFilesystem(loop.partitions[i]!, part.filesystem!);
          const found = await readFilesystemChecksums(loop.partitions[i]!, part.filesystem!);
          assert.deepEqual(found, part.files);
        }
      });
    },
  );
});

test('a disk without a table is one file system over the whole image', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('mkfs.ext4');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 32 * MiB, table: 'none', partitions: [{ filesystem: 'ext2', fill: { files: 4 } }] },
    async (disk) => {
      const loop = await attachLoopRange(disk.image, 0, disk.size);
      try {
        const found = await readFilesystemChecksums(loop.device, 'ext2');
        assert.deepEqual(found, disk.partitions[0]!.files);
      } finally {
        await loop.detach();
      }
    },
  );
});

test('an MBR test disk with logical partitions holds NTFS (through ntfs-3g) and ext3', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('sfdisk', 'mkfs.ntfs', 'ntfs-3g', 'partx');
  if (skip) return t.skip(skip);
  await withTestDisk(
    {
      size: 96 * MiB,
      table: 'dos',
      partitions: [
        { size: 32 * MiB, filesystem: 'ntfs', fill: { files: 5 } },
        { type: 'E', filesystem: null },
        { size: 24 * MiB, filesystem: 'ext3', fill: { files: 3 } },
        { filesystem: 'swap' },
      ],
    },
    async (disk) => {
      assert.deepEqual(
        disk.partitions.map((p) => p.number),
        [1, 2, 5, 6],
      );
      await withLoop(disk.image, async (loop) => {
        assert.deepEqual(
          await readFilesystemChecksums(loop.partitions[0]!, 'ntfs'),
          disk.partitions[0]!.files,
        );
        const ext3 = loop.partitions.find((p) => p.endsWith('p5'))!;
        assert.deepEqual(await readFilesystemChecksums(ext3, 'ext3'), disk.partitions[2]!.files);
      });
    },
  );
});

test('a failing test body still leaves no loop device or mount behind', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('sfdisk', 'mkfs.ext4', 'partx');
  if (skip) return t.skip(skip);
  let image = '';
  await assert.rejects(
    withTestDisk({ size: 32 * MiB, table: 'gpt', partitions: [{ filesystem: 'ext4' }] }, async (disk) => {
      image = disk.image;
      await withLoop(disk.image, async (loop) => {
        await withMount(loop.partitions[0]!, 'ext4', async () => {
          throw new Error('the test failed here');
        });
      });
    }),
    /the test failed here/,
  );
  const { stdout } = await runTool('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE']);
  assert.ok(!stdout.includes(image), `a loop device still backs ${image}`);
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  assert.ok(!mounts.includes(dirname(image)), 'nothing is mounted from the test disk');
});
