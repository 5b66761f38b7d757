// The layout is what a backup copies: proven sufficient by copying only its used ranges onto a zeroed image
// and finding every file system clean and every file's checksum equal.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { openReader, openWriter } from '../device/open.ts';
import { rangesBytes } from '../device/ranges.ts';
import { type TestDisk, withTestDisk } from '../testing/disk.ts';
import { checkFilesystem, readFilesystemChecksums, withMount } from '../testing/filesystems.ts';
import { MiB, makeSparseImage, readPartitionTable } from '../testing/image.ts';
import { attachLoopRange, withLoop } from '../testing/loop.ts';
import { loopUnavailableReason, missingToolReason } from '../testing/tools.ts';
import { type DiskLayout, inspectDisk } from './inspect.ts';

/** Copies only `layout.usedRanges` of `from` onto a new zeroed image `to` of the same size. */
async function copyUsedRanges(from: string, to: string, layout: DiskLayout): Promise<void> {
  const reader = await openReader(from);
  const writer = await openWriter(to, { minSize: reader.size });
  try {
    for (const range of layout.usedRanges) {
      for (let at = range.start; at < range.start + range.length; at += 4 * MiB) {
        const length = Math.min(4 * MiB, range.start + range.length - at);
        await writer.write(at, await reader.read(at, length));
      }
    }
    await writer.flush();
  } finally {
    await reader.close();
    await writer.close();
  }
}

/** sfdisk's view of a table (disk id, usable LBAs, partitions), without the node names that carry the file name. */
async function tableWithoutNodes(image: string) {
  const table = await readPartitionTable(image);
  return { ...table, partitions: table.partitions.map(({ node: _node, ...rest }) => rest) };
}

/** A copy of only the disk's used ranges has the same table, and every file system on it is clean and whole. */
async function assertUsedCopyIsWhole(disk: TestDisk, layout: DiskLayout) {
  const copy = join(disk.image, '..', 'copy.img');
  await makeSparseImage(copy, disk.size);
  await copyUsedRanges(disk.image, copy, layout);
  assert.deepEqual(await tableWithoutNodes(copy), await tableWithoutNodes(disk.image));
  await withLoop(
    copy,
    async (loop) => {
      for (const part of disk.partitions) {
        if (!part.filesystem || part.filesystem === 'swap') continue;
        const node = loop.partitions.find((p) => p.endsWith(`p${part.number}`))!;
        await checkFilesystem(node, part.filesystem);
        assert.deepEqual(
          await readFilesystemChecksums(node, part.filesystem),
          part.files,
          `partition ${part.number}`,
        );
      }
    },
    { readOnly: true },
  );
}

test('copying only the used ranges of a GPT disk (ext4, FAT32, NTFS, swap) keeps every file system whole', async (t) => {
  const skip =
    loopUnavailableReason() ??
    missingToolReason('sfdisk', 'partx', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'mkfs.ntfs');
  if (skip) return t.skip(skip);
  const fill = { files: 14, maxFileSize: 384 * 1024, deletedFiles: 5 };
  await withTestDisk(
    {
      size: 192 * MiB,
      table: 'gpt',
      partitions: [
        { size: 64 * MiB, filesystem: 'ext4', fill },
        { size: 40 * MiB, filesystem: 'fat32', fill },
        { size: 48 * MiB, filesystem: 'ntfs', fill },
        { size: 16 * MiB, filesystem: 'swap' },
      ],
    },
    async (disk) => {
      const layout = await inspectDisk(disk.image);
      assert.equal(layout.partitionTable, 'gpt');
      assert.deepEqual(layout.warnings, []);
      assert.deepEqual(
        layout.partitions.map((p) => [p.index, p.start, p.size, p.filesystem]),
        disk.partitions.map((p) => [p.number, p.start, p.size, p.filesystem]),
      );
      // Far less than the disk, more than the files.
      assert.ok(layout.usedBytes < 40 * MiB, `used ${layout.usedBytes}`);
      assert.equal(
        layout.usedBytes,
        rangesBytes(layout.usedRanges),
        'the disk total is the size of its merged ranges',
      );
      await assertUsedCopyIsWhole(disk, layout);
    },
  );
});

test('copying only the used ranges of an MBR disk with logical partitions keeps the chain and the files', async (t) => {
  const skip =
    loopUnavailableReason() ?? missingToolReason('sfdisk', 'partx', 'mkfs.ext4', 'mkfs.vfat', 'mcopy');
  if (skip) return t.skip(skip);
  const fill = { files: 10, maxFileSize: 256 * 1024, deletedFiles: 4 };
  await withTestDisk(
    {
      size: 128 * MiB,
      table: 'dos',
      partitions: [
        { size: 32 * MiB, filesystem: 'fat16', fill },
        { type: 'E', filesystem: null },
        { size: 40 * MiB, filesystem: 'ext4', mkfsArgs: ['-O', '^64bit,^metadata_csum'], fill },
        { filesystem: 'ext2', fill },
      ],
    },
    async (disk) => {
      const layout = await inspectDisk(disk.image);
      assert.equal(layout.partitionTable, 'mbr');
      assert.deepEqual(
        layout.partitions.map((p) => [p.index, p.filesystem]),
        [
          [1, 'fat16'],
          [5, 'ext4'],
          [6, 'ext2'],
        ],
      );
      await assertUsedCopyIsWhole(disk, layout);
    },
  );
});

test('the disk map holds the table areas and the boot area, and skips unallocated space', async (t) => {
  const skip = missingToolReason('sfdisk');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 64 * MiB, table: 'gpt', partitions: [{ size: 8 * MiB, filesystem: null }] },
    async (disk) => {
      const layout = await inspectDisk(disk.image);
      const table = await readPartitionTable(disk.image);
      // Partition 1 (raw, unknown: all of it) right after the 1 MiB boot area; then a gap; then the backup GPT.
      assert.deepEqual(layout.usedRanges, [
        { start: 0, length: 9 * MiB },
        { start: (table.lastLba! + 1) * 512, length: 64 * MiB - (table.lastLba! + 1) * 512 },
      ]);
      assert.equal(layout.partitions[0]!.allBlocks, true);
      assert.equal(layout.partitions[0]!.filesystem, null);
    },
  );
});

test('inspecting a mounted device warns that its map is a moment of a live file system', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('mkfs.ext4');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 32 * MiB, table: 'none', partitions: [{ filesystem: 'ext4' }] },
    async (disk) => {
      const loop = await attachLoopRange(disk.image, 0, disk.size);
      try {
        await withMount(loop.device, 'ext4', async (dir) => {
          const layout = await inspectDisk(loop.device);
          assert.equal(layout.partitions[0]!.filesystem, 'ext4');
          assert.ok(
            layout.warnings.some((w) =>
              w.startsWith(`${loop.device} is mounted on ${dir}: the used map is a moment's view`),
            ),
            layout.warnings.join('\n'),
          );
        });
        assert.deepEqual((await inspectDisk(loop.device)).warnings, []);
      } finally {
        await loop.detach();
      }
    },
  );
});
