// Backup and restore of real file systems through the real command line: a GPT disk with ext4, FAT32 and NTFS
// made by mkfs and filled with files; the restored disk is byte-identical, each file system checks clean and
// every file's checksum matches. Also: restoring the same point twice, and to a bigger target.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildTestDisk, type TestDisk } from '../testing/disk.ts';
import { checkFilesystem, readFilesystemChecksums } from '../testing/filesystems.ts';
import { MiB, withTempDir } from '../testing/image.ts';
import { attachLoopRange } from '../testing/loop.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';
import { testBit } from './manifest.ts';
import { Repository } from './repository.ts';
import { usedMapOf } from './testing/point-chunks.ts';
import { runCliOk, TEST_PASSWORD } from './testing/run-cli.ts';

const skip =
  loopUnavailableReason() ?? missingToolReason('mkfs.ext4', 'mkfs.vfat', 'mkfs.ntfs', 'mcopy', 'ntfs-3g');

async function sha256(path: string, length?: number): Promise<string> {
  const bytes = await readFile(path);
  return createHash('sha256')
    .update(length === undefined ? bytes : bytes.subarray(0, length))
    .digest('hex');
}

/** The source with every unit outside the point's used map zeroed: what a restore to an empty image holds. */
async function expectedImage(source: string, repoPath: string, pointId: string): Promise<Buffer> {
  const repo = await Repository.open(repoPath, { password: TEST_PASSWORD });
  try {
    const manifest = await repo.loadManifest(pointId);
    const bytes = await readFile(source);
    const used = await usedMapOf(repo, manifest);
    for (let unit = 0; unit < manifest.unitCount; unit++) {
      if (!testBit(used, unit)) bytes.fill(0, unit * manifest.unitSize, (unit + 1) * manifest.unitSize);
    }
    return bytes;
  } finally {
    await repo.close();
  }
}

/** fsck and file checksums of every partition of `image`, compared with what the fixture wrote. */
async function assertFilesystemsIntact(image: string, disk: TestDisk): Promise<void> {
  for (const partition of disk.partitions) {
    const loop = await attachLoopRange(image, partition.start, partition.size);
    try {
      await checkFilesystem(loop.device, partition.filesystem!);
      const checksums = await readFilesystemChecksums(loop.device, partition.filesystem!);
      assert.deepEqual(
        new Map([...checksums].filter(([path]) => partition.files.has(path))),
        partition.files,
        `files of ${partition.filesystem}`,
      );
      assert.equal(partition.files.size > 0, true);
    } finally {
      await loop.detach();
    }
  }
}

test('ext4, FAT32 and NTFS survive backup and restore byte for byte, twice and to a bigger target', {
  skip: skip ?? false,
  timeout: 180_000,
}, async () => {
  await withTempDir(async (dir) => {
    const disk = await buildTestDisk(join(dir, 'disk.img'), {
      size: 128 * MiB,
      table: 'gpt',
      partitions: [
        { size: 32 * MiB, filesystem: 'ext4', fill: { files: 25, maxFileSize: 512 * 1024, deletedFiles: 5 } },
        { size: 48 * MiB, filesystem: 'fat32', fill: { files: 20, maxFileSize: 256 * 1024 } },
        { filesystem: 'ntfs', fill: { files: 15, maxFileSize: 256 * 1024 } },
      ],
    });
    const repo = join(dir, 'repo');
    await runCliOk(['init', '--repo', repo]);
    const backup = JSON.parse((await runCliOk(['backup', disk.image, '--repo', repo, '--json'])).stdout);
    assert.equal(backup.point.complete, true);
    assert.equal(backup.point.sourceSize, 128 * MiB);
    assert.ok(
      backup.stats.storedBytes < (128 * MiB) / 2,
      `stored ${backup.stats.storedBytes} bytes for a mostly empty disk`,
    );
    assert.ok(
      backup.stats.usedBytes < (128 * MiB) / 2,
      `used map of ${backup.stats.usedBytes} bytes: free space is skipped`,
    );
    const expected = await expectedImage(disk.image, repo, backup.point.id);
    const sourceSum = createHash('sha256').update(expected).digest('hex');

    const restored = join(dir, 'restored.img');
    await runCliOk(['restore', backup.point.id, '--repo', repo, '--to', restored]);
    assert.equal(
      await sha256(restored),
      sourceSum,
      'restored image equals the source on used units, zeros elsewhere',
    );
    await assertFilesystemsIntact(restored, disk);

    // The same point again onto the same (now written) image: still exact.
    await runCliOk(['restore', backup.point.id, '--repo', repo, '--to', restored, '--json']);
    assert.equal(await sha256(restored), sourceSum, 'second restore equals the source');

    // A bigger target keeps its size; the disk's bytes are at its start, but for the GPT: its backup header and
    // table move to the new end (so the primary header changes: it names where the backup lies).
    const bigger = join(dir, 'bigger.img');
    await writeFile(bigger, Buffer.alloc(0));
    await truncate(bigger, 160 * MiB);
    await runCliOk(['restore', 'latest', '--repo', repo, '--to', bigger]);
    assert.equal((await stat(bigger)).size, 160 * MiB);
    const tableEnd = 34 * 512;
    const partitionsEnd = 128 * MiB - 33 * 512;
    const biggerBytes = await readFile(bigger);
    assert.ok(
      biggerBytes.subarray(tableEnd, partitionsEnd).equals(expected.subarray(tableEnd, partitionsEnd)),
      'bigger target holds the disk at its start',
    );
    assert.match((await runTool('sgdisk', ['-v', bigger])).stdout, /No problems found/);
    await assertFilesystemsIntact(bigger, disk);

    const verify = await runCliOk(['verify', '--repo', repo, '--read-data']);
    assert.match(verify.stdout, /is sound: 1 points/);
  });
});
