// Sequential read throughput of a block device through openReader (O_DIRECT with aligned buffers when the
// native helper is built) against plain buffered reads from Node and `dd` (buffered and iflag=direct) in the
// same run. The device is a loop device over an image of random data of --size; its backing file is in the
// page cache after the first pass, so the figures compare per-request overheads more than the disk.
// Usage: npx node bench/device-read.ts [--size 256M] [--request 1M]. Needs root and loop devices.
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { openReader } from '../engine/device/open.ts';
import { MiB, withTempDir } from '../engine/testing/image.ts';
import { attachLoopRange } from '../engine/testing/loop.ts';
import { loopUnavailableReason, runTool } from '../engine/testing/tools.ts';
import { parseByteSize } from '../protocol/byte-size.ts';

const { values } = parseArgs({
  options: { size: { type: 'string', default: '256M' }, request: { type: 'string', default: '1M' } },
});
const parseSize = (text: string) => {
  const bytes = parseByteSize(text);
  if (bytes === null) throw new Error(`${text}: expected a size such as 256M`);
  return bytes;
};
const size = parseSize(values.size);
const request = parseSize(values.request);
const skip = loopUnavailableReason();
if (skip) {
  process.stdout.write(`device-read: skipped (${skip})\n`);
  process.exit(0);
}

const rate = (ms: number) => `${(size / MiB / (ms / 1000)).toFixed(0)} MiB/s`;

await withTempDir(async (dir) => {
  const image = `${dir}/random.img`;
  const file = await open(image, 'w');
  for (let at = 0; at < size; at += 16 * MiB) await file.write(randomBytes(Math.min(16 * MiB, size - at)));
  await file.close();
  const loop = await attachLoopRange(image, 0, size);
  try {
    const timeIt = async (body: () => Promise<void>) => {
      await body(); // warm the backing file's cache
      const started = performance.now();
      await body();
      return performance.now() - started;
    };
    const diskline = await timeIt(async () => {
      const reader = await openReader(loop.device);
      for (let at = 0; at < size; at += request) await reader.read(at, request);
      await reader.close();
    });
    const buffered = await timeIt(async () => {
      const handle = await open(loop.device, 'r');
      const buffer = Buffer.allocUnsafe(request);
      for (let at = 0; at < size; at += request) await handle.read(buffer, 0, request, at);
      await handle.close();
    });
    const blocks = String(size / request);
    const ddDirect = await timeIt(async () => {
      await runTool('dd', [
        `if=${loop.device}`,
        'of=/dev/null',
        `bs=${request}`,
        `count=${blocks}`,
        'iflag=direct',
      ]);
    });
    const ddBuffered = await timeIt(async () => {
      await runTool('dd', [`if=${loop.device}`, 'of=/dev/null', `bs=${request}`, `count=${blocks}`]);
    });
    process.stdout.write(
      `sequential read of ${values.size} in ${values.request} requests:\n` +
        `  diskline openReader   ${rate(diskline)}\n` +
        `  node buffered         ${rate(buffered)}  (diskline/buffered ${(buffered / diskline).toFixed(2)}x)\n` +
        `  dd iflag=direct       ${rate(ddDirect)}  (diskline/dd-direct ${(ddDirect / diskline).toFixed(2)}x)\n` +
        `  dd buffered           ${rate(ddBuffered)}  (diskline/dd ${(ddBuffered / diskline).toFixed(2)}x)\n`,
    );
  } finally {
    await loop.detach();
  }
});
