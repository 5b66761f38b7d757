// What the used-map cross-check costs: inspectDisk of the benchmark image (ext4, ~60% filled with files of the
// repository benchmark's sizes: one in ten 32 MiB, the rest up to 2 MiB) with and without checking the map
// against the file system's own records, best of --rounds with a warm cache, and the bytes each reads.
// --fs takes a comma list (ext4, ntfs, exfat) to measure other checked file systems on the same fill.
// Usage: npx node bench/map-cross-check.ts [--size 4G] [--rounds 3] [--fs ext4]. Needs root and the mkfs tools.
import { randomFillSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { openReader } from '../engine/device/open.ts';
import type { BlockReader } from '../engine/device/types.ts';
import { inspectDisk } from '../engine/layout/inspect.ts';
import { makeFilesystem, type TestFilesystem, withMount } from '../engine/testing/filesystems.ts';
import { MiB } from '../engine/testing/image.ts';
import { attachLoop } from '../engine/testing/loop.ts';
import { loopUnavailableReason } from '../engine/testing/tools.ts';
import { parseByteSize } from '../protocol/byte-size.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '4G' },
    rounds: { type: 'string', default: '3' },
    fs: { type: 'string', default: 'ext4' },
  },
});
const size = parseByteSize(values.size);
if (size === null || size < 256 * MiB)
  throw new Error(`--size ${values.size}: expected a size of at least 256M, e.g. 4G`);
const rounds = Math.max(1, Number(values.rounds));
const kinds = values.fs.split(',') as TestFilesystem[];
const skip = loopUnavailableReason();
if (skip) {
  process.stdout.write(`map-cross-check: skipped (${skip})\n`);
  process.exit(0);
}

/** The repository benchmark's file sizes, random content (what the map check reads does not depend on it). */
async function fill(root: string, bytes: number): Promise<number> {
  let written = 0;
  let n = 0;
  while (written < bytes) {
    const fileSize = Math.min(bytes - written, n % 10 === 0 ? 32 * MiB : ((n * 7919) % 2048) * 1024 + 4096);
    const dir = join(root, `d${n % 16}`);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, `full-${n}.bin`), randomFillSync(Buffer.allocUnsafe(fileSize)));
    written += fileSize;
    n += 1;
  }
  return n;
}

/** A reader that counts the bytes read through it. */
function counting(reader: BlockReader): BlockReader & { bytesRead: number } {
  const counted = {
    path: reader.path,
    size: reader.size,
    logicalSectorSize: reader.logicalSectorSize,
    bytesRead: 0,
    async read(offset: number, length: number) {
      const data = await reader.read(offset, length);
      counted.bytesRead += data.length;
      return data;
    },
    close: () => reader.close(),
  };
  return counted;
}

const work = await mkdtemp(join(tmpdir(), 'diskline-bench-crosscheck-'));
try {
  for (const kind of kinds) {
    const image = join(work, `${kind}.img`);
    await writeFile(image, Buffer.alloc(0));
    await truncate(image, size);
    const loop = await attachLoop(image);
    let files = 0;
    try {
      await makeFilesystem(loop.device, kind);
      files = await withMount(loop.device, kind, (dir) => fill(dir, Math.floor(size * 0.6)));
    } finally {
      await loop.detach();
    }
    const timings = { off: [] as number[], on: [] as number[] };
    const bytes = { off: 0, on: 0 };
    let allBlocks = false;
    for (let round = 0; round <= rounds; round++) {
      for (const mode of ['off', 'on'] as const) {
        const reader = counting(await openReader(image));
        try {
          const started = performance.now();
          const layout = await inspectDisk(reader, { crossCheck: mode === 'on' });
          // Round 0 warms the cache and is not counted.
          if (round > 0) timings[mode].push(performance.now() - started);
          bytes[mode] = reader.bytesRead;
          allBlocks ||= layout.partitions.some((p) => p.allBlocks);
        } finally {
          await reader.close();
        }
      }
    }
    const best = (list: number[]) => Math.min(...list);
    const off = best(timings.off);
    const on = best(timings.on);
    process.stdout.write(
      `${kind}, ${values.size} image, ${files} files (~60% full): map ${off.toFixed(1)} ms reading ` +
        `${(bytes.off / 1024).toFixed(0)} KiB; with the cross-check ${on.toFixed(1)} ms reading ` +
        `${(bytes.on / 1024).toFixed(0)} KiB: the check costs ${(on - off).toFixed(1)} ms ` +
        `(${(on / off).toFixed(2)}x the map alone), best of ${rounds}, warm cache${allBlocks ? ' — WARNING: a map was not trusted' : ''}\n`,
    );
    await rm(image);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
