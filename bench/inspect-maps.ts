// How fast Diskline reads a disk's used-block map, against partclone mapping the same file systems
// (its -D domain-log mode) in the same run. Builds a GPT image of --size with ext4, XFS and NTFS
// partitions, each about a quarter full, then times both and checks they agree on the bytes.
// Usage: npx node bench/inspect-maps.ts [--size 512M] [--rounds 3]. Needs root, loop devices, sfdisk,
// mkfs.ext4, mkfs.xfs, mkfs.ntfs, ntfs-3g and partclone.
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { rangesBytes } from '../engine/device/ranges.ts';
import { inspectDisk } from '../engine/layout/inspect.ts';
import { buildTestDisk, type TestPartitionSpec } from '../engine/testing/disk.ts';
import { MiB, withTempDir } from '../engine/testing/image.ts';
import { attachLoopRange } from '../engine/testing/loop.ts';
import { partcloneUsedRanges } from '../engine/testing/partclone.ts';
import { loopUnavailableReason, missingToolReason } from '../engine/testing/tools.ts';
import { parseByteSize } from '../protocol/byte-size.ts';

const { values } = parseArgs({
  options: { size: { type: 'string', default: '512M' }, rounds: { type: 'string', default: '3' } },
});

function parseSize(text: string): number {
  const bytes = parseByteSize(text);
  if (bytes === null) throw new Error(`--size ${text}: expected a size such as 256M, 4G or 2T`);
  return bytes;
}

const size = parseSize(values.size);
const rounds = Math.max(1, Number(values.rounds));
const skip = loopUnavailableReason() ?? missingToolReason('sfdisk', 'mkfs.xfs', 'mkfs.ntfs', 'partclone.xfs');
if (skip) {
  process.stdout.write(`inspect-maps: skipped (${skip})\n`);
  process.exit(0);
}
if (size < 384 * MiB) throw new Error('--size must be at least 384M (XFS needs room)');

const third = Math.floor((size - 2 * MiB) / 3 / MiB) * MiB;
const fillFor = (bytes: number) => ({ files: 24, maxFileSize: Math.floor(bytes / 4 / 12), directories: 4 });
const partitions: TestPartitionSpec[] = [
  { size: third, filesystem: 'ext4', fill: fillFor(third) },
  { size: third, filesystem: 'xfs', fill: fillFor(third) },
  { filesystem: 'ntfs', fill: fillFor(third) },
];

await withTempDir(async (dir) => {
  process.stdout.write(`building a ${values.size} GPT image (ext4, xfs, ntfs, ~25% full)…\n`);
  const disk = await buildTestDisk(`${dir}/disk.img`, { size, table: 'gpt', partitions });
  const ours: number[] = [];
  let layout = await inspectDisk(disk.image);
  for (let round = 0; round < rounds; round++) {
    const started = performance.now();
    layout = await inspectDisk(disk.image);
    ours.push(performance.now() - started);
  }
  const theirs: number[] = [];
  let partcloneBytes = 0;
  for (let round = 0; round < rounds; round++) {
    let elapsed = 0;
    partcloneBytes = 0;
    for (const part of disk.partitions) {
      const loop = await attachLoopRange(disk.image, part.start, part.size);
      try {
        const started = performance.now();
        partcloneBytes += rangesBytes(await partcloneUsedRanges(part.filesystem!, loop.device));
        elapsed += performance.now() - started;
      } finally {
        await loop.detach();
      }
    }
    theirs.push(elapsed);
  }
  const best = (list: number[]) => Math.min(...list);
  const partitionBytes = layout.partitions.reduce((sum, p) => sum + p.usedBytes, 0);
  const ntfsTail =
    layout.partitions[2]!.size % layout.partitions[2]!.blockSize || layout.partitions[2]!.blockSize;
  process.stdout.write(
    `used bytes: diskline ${partitionBytes} (partitions) / ${layout.usedBytes} (disk, with tables), ` +
      `partclone ${partcloneBytes} (NTFS backup boot sector of ${ntfsTail} bytes is Diskline's only extra)\n` +
      `map time (best of ${rounds}): diskline inspectDisk ${best(ours).toFixed(1)} ms for the whole disk; ` +
      `partclone -D ${best(theirs).toFixed(1)} ms for its three partitions; ratio ${(best(theirs) / best(ours)).toFixed(1)}x\n`,
  );
});
