// btrfs maps are checked by what matters: a copy of only the mapped bytes passes btrfs check, a scrub of
// every mirror (DUP metadata has two) finds no error, and every file reads back with its checksum.
// (partclone 0.3's btrfs map is not a usable reference: it maps one DUP mirror and some logical addresses
// as if they were physical.)
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { openReader, openWriter } from '../device/open.ts';
import { rangesBytes } from '../device/ranges.ts';
import { withTestDisk } from '../testing/disk.ts';
import { checkFilesystem, readFilesystemChecksums, withMount } from '../testing/filesystems.ts';
import { MiB, makeSparseImage } from '../testing/image.ts';
import { attachLoopRange } from '../testing/loop.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';
import { usedMapOf } from './index.ts';
import { partitionVolume } from './volume.ts';

test('btrfs: a copy of only the used map passes btrfs check and a scrub of every mirror, files intact', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('mkfs.btrfs', 'btrfs');
  if (skip) return t.skip(skip);
  const size = 256 * MiB;
  await withTestDisk(
    {
      size,
      table: 'none',
      partitions: [{ filesystem: 'btrfs', fill: { files: 16, maxFileSize: 768 * 1024, deletedFiles: 6 } }],
    },
    async (disk) => {
      const reader = await openReader(disk.image);
      const map = await (async () => {
        try {
          return await usedMapOf(partitionVolume(reader, 0, reader.size, disk.image), { strict: true });
        } finally {
          await reader.close();
        }
      })();
      assert.equal(map.filesystem, 'btrfs');
      assert.equal(map.allBlocks, false);
      assert.deepEqual(
        map.usedRanges[0],
        { start: 0, length: MiB },
        'the bootloader area and first superblock',
      );
      assert.ok(map.usedRanges.some((r) => r.start <= 64 * MiB && r.start + r.length >= 64 * MiB + 4096));
      assert.ok(rangesBytes(map.usedRanges) < 32 * MiB, `used ${rangesBytes(map.usedRanges)}`);

      const copy = join(disk.image, '..', 'copy.img');
      await makeSparseImage(copy, size);
      const source = await openReader(disk.image);
      const target = await openWriter(copy, { minSize: size });
      for (const r of map.usedRanges) await target.write(r.start, await source.read(r.start, r.length));
      await target.flush();
      await target.close();
      await source.close();

      await checkFilesystem(copy, 'btrfs');
      const loop = await attachLoopRange(copy, 0, size);
      try {
        assert.deepEqual(await readFilesystemChecksums(loop.device, 'btrfs'), disk.partitions[0]!.files);
        await withMount(
          loop.device,
          'btrfs',
          async (dir) => {
            const { stdout } = await runTool('btrfs', ['scrub', 'start', '-B', '-r', dir]);
            assert.match(stdout, /no errors found/);
          },
          { readOnly: true },
        );
      } finally {
        await loop.detach();
      }
    },
  );
});
