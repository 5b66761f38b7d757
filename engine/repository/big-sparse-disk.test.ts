// A 2 TiB disk through the command line: a sparse image with an ext4 made by mkfs and ~300 MB of files is backed
// up, 20 MB of it changed, backed up again; `points`, `diff`, `verify` and restores of both points follow. The
// point's cost follows what changed: the incremental writes a handful of map segments and a point file of a few
// KiB, not a map of the whole disk; each restore is e2fsck clean with every file's checksum. The time and peak
// memory of each step are printed as diagnostics.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkFilesystem, checksumTree, makeFilesystem, withMount } from '../testing/filesystems.ts';
import { MiB, makeSparseImage, withTempDir } from '../testing/image.ts';
import { timedCli } from './testing/run-cli.ts';

const DISK_BYTES = 2 * 1024 ** 4;

async function folderEntries(path: string): Promise<string[]> {
  return (await readdir(path).catch(() => [] as string[])).sort();
}

test('a 2 TiB ext4 disk backs up, takes a 20 MB incremental that writes only changed segments, diffs, verifies and restores exactly', async (t) => {
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, 'disk.img'), DISK_BYTES);
    // largefile4: few inodes, so the used map is the files and the journal, not 32 GiB of inode tables.
    await makeFilesystem(image, 'ext4', ['-T', 'largefile4']);
    const firstFiles = await withMount(image, 'ext4', async (root) => {
      await writeFile(join(root, 'big.bin'), randomBytes(256 * MiB));
      for (let i = 0; i < 200; i++)
        await writeFile(join(root, `small-${i}.bin`), randomBytes(200 * 1024 + i));
      return checksumTree(root);
    });
    const repo = join(dir, 'repo');
    const steps: string[] = [];
    const step = async (name: string, args: string[]) => {
      const run = await timedCli(args);
      assert.equal(run.status, 0, `${name}: ${run.stderr}${run.stdout}`);
      steps.push(`${name}: ${run.seconds} s, peak ${run.peakMiB} MiB`);
      return run;
    };
    await step('init', ['init', '--repo', repo]);
    await step('full backup', ['backup', image, '--repo', repo]);
    const segmentsAfterFull = await folderEntries(join(repo, 'segments'));

    // 20 MB changed: 12 MB rewritten in the middle of the big file, 8 MB of new files.
    const secondFiles = await withMount(image, 'ext4', async (root) => {
      const big = await open(join(root, 'big.bin'), 'r+');
      await big.write(randomBytes(12 * MiB), 0, 12 * MiB, 100 * MiB);
      await big.close();
      for (let i = 0; i < 8; i++) await writeFile(join(root, `new-${i}.bin`), randomBytes(MiB));
      return checksumTree(root);
    });
    await step('incremental backup', ['backup', image, '--repo', repo]);
    const segmentsAfterIncremental = await folderEntries(join(repo, 'segments'));
    const newSegments = segmentsAfterIncremental.filter((name) => !segmentsAfterFull.includes(name));
    let newSegmentBytes = 0;
    for (const name of newSegments) newSegmentBytes += (await stat(join(repo, 'segments', name))).size;

    const listed = await step('points', ['points', '--repo', repo, '--json']);
    const points = JSON.parse(listed.stdout) as { id: string; complete: boolean; parent: string | null }[];
    assert.equal(points.length, 2);
    assert.ok(points.every((p) => p.complete));
    const [first, second] = points as [(typeof points)[0], (typeof points)[0]];
    assert.equal(second.parent, first.id);
    const pointFileBytes = (await stat(join(repo, 'points', second.id))).size;
    // A 2 TiB disk is 2,048 segments: the incremental's point file and new segments are KiB, not a whole map
    // (format 3 wrote ~185 MB per point of a disk this size).
    assert.ok(pointFileBytes < 256 * 1024, `the point file holds ${pointFileBytes} bytes`);
    assert.ok(
      newSegments.length > 0 && newSegments.length <= 40,
      `the incremental wrote ${newSegments.length} segments`,
    );
    assert.ok(newSegmentBytes < 4 * MiB, `the incremental's new segments hold ${newSegmentBytes} bytes`);

    const diff = await step('diff', ['diff', first.id, second.id, '--repo', repo, '--json']);
    const { changedBytes } = JSON.parse(diff.stdout) as { changedBytes: number };
    assert.ok(
      changedBytes >= 20 * MiB && changedBytes < 64 * MiB,
      `diff names ${changedBytes} changed bytes for a 20 MB change`,
    );
    await step('verify', ['verify', '--repo', repo]);

    for (const [point, files] of [
      [second, secondFiles],
      [first, firstFiles],
    ] as const) {
      const target = join(dir, `restored-${point.id}.img`);
      await step(`restore ${point === first ? 'full' : 'incremental'}`, [
        'restore',
        point.id,
        '--repo',
        repo,
        '--to',
        target,
      ]);
      assert.equal((await stat(target)).size, DISK_BYTES);
      await checkFilesystem(target, 'ext4');
      const restored = await withMount(target, 'ext4', checksumTree, { readOnly: true });
      assert.deepEqual(restored, files, `every file of point ${point.id} has its checksum`);
    }
    t.diagnostic(
      `${steps.join('; ')}; incremental: point file ${pointFileBytes} bytes, ${newSegments.length} new segments (${newSegmentBytes} bytes), diff ${changedBytes} bytes`,
    );
  });
});
