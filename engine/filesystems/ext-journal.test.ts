// A mounted ext4 whose journal holds committed allocations not yet written home: the used map must follow
// the journal, or a backup taken at that moment would miss the files' blocks.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { rangesBytes } from '../device/ranges.ts';
import {
  checkFilesystem,
  makeFilesystem,
  readFilesystemChecksums,
  withMount,
  writeSyncedFiles,
} from '../testing/filesystems.ts';
import { MiB, makeSparseImage, withTempDir } from '../testing/image.ts';
import { attachLoopRange } from '../testing/loop.ts';
import { partcloneUsedRanges } from '../testing/partclone.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';
import { copyRanges, usedMapOfImage } from './testing/image-map.ts';

test('a mounted ext4 with fsynced files: the map replays the journal and equals partclone after e2fsck', async (t) => {
  const skip =
    loopUnavailableReason() ?? missingToolReason('mkfs.ext4', 'e2fsck', 'debugfs', 'partclone.extfs');
  if (skip) return t.skip(skip);
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, 'live.img'), 96 * MiB);
    await makeFilesystem(image, 'ext4');
    const snapshot = join(dir, 'snapshot.img');
    const checksums = new Map<string, string>();
    const loop = await attachLoopRange(image, 0, 96 * MiB);
    try {
      await withMount(loop.device, 'ext4', async (mountDir) => {
        // fsync commits the transaction (bitmaps in the journal) without writing the bitmaps home.
        const sizes = [0, 1, 2, 3].map((i) => 2 * MiB + i * 4099);
        for (const [name, sum] of await writeSyncedFiles(mountDir, sizes)) checksums.set(name, sum);
        // The image as the device holds it right now, file system still mounted.
        await copyFile(image, snapshot);
      });
    } finally {
      await loop.detach();
    }
    const map = await usedMapOfImage(snapshot);
    assert.equal(map.allBlocks, false, map.warnings.join('; '));
    assert.ok(rangesBytes(map.usedRanges) > 8 * MiB, 'the fsynced files are in the map');

    // Without the journal the bitmaps on disk do not know (all of) the files yet.
    const bitmapsOnly = join(dir, 'bitmaps-only.img');
    await copyFile(snapshot, bitmapsOnly);
    await runTool('debugfs', ['-w', '-R', 'feature -needs_recovery', bitmapsOnly]);
    const withoutJournal = rangesBytes((await usedMapOfImage(bitmapsOnly)).usedRanges);
    // (A sync anywhere on the machine writes the bitmaps home early, so "fewer" is likely, not certain.)
    assert.ok(withoutJournal <= rangesBytes(map.usedRanges), 'the map includes everything the bitmaps hold');
    t.diagnostic(
      `bitmaps alone: ${withoutJournal} bytes; with the journal replayed: ${rangesBytes(map.usedRanges)}`,
    );

    // e2fsck replays the journal; partclone then maps the result.
    const replayed = join(dir, 'replayed.img');
    await copyFile(snapshot, replayed);
    await runTool('e2fsck', ['-E', 'journal_only', '-y', replayed]).catch(() => undefined);
    await runTool('e2fsck', ['-f', '-y', replayed]).catch(() => undefined);
    assert.deepEqual(map.usedRanges, await partcloneUsedRanges('ext4', replayed));

    // Copying only the map of the live snapshot is enough: after replay the file system is clean, the files whole.
    const copy = join(dir, 'copy.img');
    await makeSparseImage(copy, 96 * MiB);
    await copyRanges(snapshot, copy, map.usedRanges, 96 * MiB);
    await runTool('e2fsck', ['-E', 'journal_only', '-y', copy]).catch(() => undefined);
    await runTool('e2fsck', ['-f', '-y', copy]).catch(() => undefined);
    await checkFilesystem(copy, 'ext4');
    const copyLoop = await attachLoopRange(copy, 0, 96 * MiB);
    try {
      const found = await readFilesystemChecksums(copyLoop.device, 'ext4');
      assert.deepEqual(found, checksums);
    } finally {
      await copyLoop.detach();
    }
  });
});
