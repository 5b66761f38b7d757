// XFS free-space trees are only trusted with a clean or covered log: a mounted XFS with fresh changes is
// copied whole, a frozen one (covered log) is mapped exactly — and a copy of only that map is whole.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import {
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

test('XFS: mounted with fresh changes is every block; frozen is mapped exactly and a copy of the map is whole', async (t) => {
  const skip =
    loopUnavailableReason() ?? missingToolReason('mkfs.xfs', 'fsfreeze', 'xfs_repair', 'partclone.xfs');
  if (skip) return t.skip(skip);
  const size = 160 * MiB;
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, 'live.img'), size);
    await makeFilesystem(image, 'xfs');
    const dirtyCopy = join(dir, 'dirty.img');
    const frozenCopy = join(dir, 'frozen.img');
    const checksums = new Map<string, string>();
    const loop = await attachLoopRange(image, 0, size);
    try {
      await withMount(loop.device, 'xfs', async (mountDir) => {
        const sizes = [0, 1, 2].map((i) => 2 * MiB + i * 777);
        for (const [name, sum] of await writeSyncedFiles(mountDir, sizes)) checksums.set(name, sum);
        await copyFile(image, dirtyCopy);
        await runTool('fsfreeze', ['--freeze', mountDir]);
        try {
          await copyFile(image, frozenCopy);
        } finally {
          await runTool('fsfreeze', ['--unfreeze', mountDir]);
        }
      });
    } finally {
      await loop.detach();
    }

    const dirty = await usedMapOfImage(dirtyCopy);
    assert.equal(dirty.allBlocks, true);
    assert.match(dirty.warnings[0]!, /the XFS log (holds changes not yet written home|has records after)/);

    const frozen = await usedMapOfImage(frozenCopy);
    assert.equal(frozen.allBlocks, false, frozen.warnings.join('; '));
    assert.deepEqual(frozen.usedRanges, await partcloneUsedRanges('xfs', frozenCopy));

    const copy = join(dir, 'copy.img');
    await makeSparseImage(copy, size);
    await copyRanges(frozenCopy, copy, frozen.usedRanges, size);
    const copyLoop = await attachLoopRange(copy, 0, size);
    try {
      // Mounting replays the covered log (superblock only); then the checker and the files must agree.
      assert.deepEqual(await readFilesystemChecksums(copyLoop.device, 'xfs'), checksums);
      await runTool('xfs_repair', ['-n', copyLoop.device]);
    } finally {
      await copyLoop.detach();
    }
  });
});
