// XFS free-space trees are only trusted with a clean or covered log: a mounted XFS with fresh changes is
// copied whole, a frozen one (covered log) is mapped exactly — and a copy of only that map is whole.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { openReader, openWriter } from '../device/open.ts';
import { makeFilesystem, readFilesystemChecksums, withMount } from '../testing/filesystems.ts';
import { MiB, makeSparseImage, withTempDir } from '../testing/image.ts';
import { attachLoopRange } from '../testing/loop.ts';
import { partcloneUsedRanges } from '../testing/partclone.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';
import { usedMapOf } from './index.ts';
import { partitionVolume } from './volume.ts';

async function mapOf(image: string) {
  const reader = await openReader(image);
  try {
    return await usedMapOf(partitionVolume(reader, 0, reader.size, image));
  } finally {
    await reader.close();
  }
}

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
        for (let i = 0; i < 3; i++) {
          const content = randomBytes(2 * MiB + i * 777);
          const handle = await open(join(mountDir, `f${i}`), 'w');
          await handle.writeFile(content);
          await handle.sync();
          await handle.close();
          checksums.set(`f${i}`, createHash('sha256').update(content).digest('hex'));
        }
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

    const dirty = await mapOf(dirtyCopy);
    assert.equal(dirty.allBlocks, true);
    assert.match(dirty.warnings[0]!, /the XFS log (holds changes not yet written home|has records after)/);

    const frozen = await mapOf(frozenCopy);
    assert.equal(frozen.allBlocks, false, frozen.warnings.join('; '));
    assert.deepEqual(frozen.usedRanges, await partcloneUsedRanges('xfs', frozenCopy));

    const copy = join(dir, 'copy.img');
    await makeSparseImage(copy, size);
    const source = await openReader(frozenCopy);
    const target = await openWriter(copy, { minSize: size });
    for (const r of frozen.usedRanges) await target.write(r.start, await source.read(r.start, r.length));
    await target.flush();
    await target.close();
    await source.close();
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
