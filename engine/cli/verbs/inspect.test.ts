import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { rangesBytes } from '../../device/ranges.ts';
import { withTestDisk } from '../../testing/disk.ts';
import { MiB, readPartitionTable } from '../../testing/image.ts';
import { attachLoopRange } from '../../testing/loop.ts';
import { partcloneUsedRanges } from '../../testing/partclone.ts';
import { loopUnavailableReason, missingToolReason } from '../../testing/tools.ts';

const cli = fileURLToPath(new URL('../../../bin/diskline', import.meta.url));

test('inspect --json lists the partitions sfdisk made, with used bytes equal to partclone for ext4', async (t) => {
  const skip =
    loopUnavailableReason() ??
    missingToolReason('sfdisk', 'partx', 'mkfs.ext4', 'mkfs.vfat', 'partclone.extfs');
  if (skip) return t.skip(skip);
  await withTestDisk(
    {
      size: 96 * MiB,
      table: 'gpt',
      partitions: [
        { size: 48 * MiB, filesystem: 'ext4', fill: { files: 8, deletedFiles: 2 } },
        { filesystem: 'fat32', fill: { files: 4 } },
      ],
    },
    async (disk) => {
      const run = spawnSync(cli, ['inspect', disk.image, '--json'], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      const report = JSON.parse(run.stdout);
      assert.equal(report.size, 96 * MiB);
      assert.equal(report.partitionTable, 'gpt');
      const table = await readPartitionTable(disk.image);
      assert.deepEqual(
        report.partitions.map((p: { index: number; start: number; size: number; type: string }) => [
          p.index,
          p.start,
          p.size,
          p.type,
        ]),
        table.partitions.map((p, i) => [i + 1, p.start, p.size, p.type]),
      );
      const [ext4, fat] = report.partitions;
      assert.equal(ext4.filesystem, 'ext4');
      assert.equal(fat.filesystem, 'fat32');
      assert.equal(fat.blockSize, 512);
      for (const field of ['index', 'start', 'size', 'type', 'filesystem', 'blockSize', 'usedBytes']) {
        assert.ok(field in ext4, `partition has ${field}`);
      }
      const part = disk.partitions[0]!;
      const loop = await attachLoopRange(disk.image, part.start, part.size);
      try {
        assert.equal(ext4.usedBytes, rangesBytes(await partcloneUsedRanges('ext4', loop.device)));
      } finally {
        await loop.detach();
      }
    },
  );
});

test('inspect prints a readable table and warns about unknown content', async (t) => {
  const skip = missingToolReason('sfdisk');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 16 * MiB, table: 'dos', partitions: [{ size: 8 * MiB, filesystem: null }] },
    async (disk) => {
      const run = spawnSync(cli, ['inspect', disk.image], { encoding: 'utf8' });
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /16\.0 MiB, MBR/);
      assert.match(run.stdout, /1 +1\.0 MiB +8\.0 MiB +Linux +unknown \(all blocks\)/);
      assert.match(run.stdout, /warning: partition 1 of .*: no known file system; every block is copied/);
    },
  );
});

test('inspect of a missing path fails with exit code 1 and names it', () => {
  const run = spawnSync(cli, ['inspect', '/nonexistent/disk.img'], { encoding: 'utf8' });
  assert.equal(run.status, 1);
  assert.match(run.stderr, /cannot open \/nonexistent\/disk\.img for reading: ENOENT/);
});

test('inspect without a device is a usage error', () => {
  const run = spawnSync(cli, ['inspect'], { encoding: 'utf8' });
  assert.equal(run.status, 2);
  assert.match(run.stderr, /give exactly one device or image to inspect/);
});
