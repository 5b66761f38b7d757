// What writers pay while a snapshot is copied: write latency (p50/p99/max) and write rate for a steady
// random-write load, without a session (peer: the same writes straight to the disk) and with sessions whose
// container is large, small, or tiny (throttled and suspended). Also how long the copy took. The disk is in
// memory, so the figures are the core's own costs, not a device's.
//
//   npx node bench/core-pressure.ts [--size 256M] [--writers 4]

import { parseArgs } from 'node:util';
import { MemoryContainer } from '../engine/container/memory.ts';
import { SnapshotSession } from '../engine/snapshot/session.ts';
import { MemoryDisk } from '../engine/snapshot/testing/memory-disk.ts';
import type { UnitSink } from '../engine/snapshot/types.ts';
import { parseByteSize } from '../protocol/byte-size.ts';

const { values } = parseArgs({
  options: { size: { type: 'string', default: '256M' }, writers: { type: 'string', default: '4' } },
  strict: false,
});
const requestedSize = parseByteSize(String(values.size));
if (requestedSize === null) throw new Error(`--size ${values.size}: expected a size such as 256M or 1G`);
const size = Math.floor(requestedSize / 65536) * 65536;
const writerCount = Math.max(1, Number(values.writers));
const unitSize = 65536;

/** A sink that costs a little per unit, like compressing and hashing, so the copy takes a while. */
const slowSink: UnitSink = {
  writeUnit: async (_offset, data) => {
    let sum = 0;
    for (let i = 0; i < data.length; i += 64) sum += data[i]!;
    if (sum < 0) throw new Error('unreachable');
    await new Promise<void>((resolve) => setImmediate(resolve));
  },
  finish: async () => {},
  abort: async () => {},
};

interface Outcome {
  latencies: number[];
  writes: number;
  seconds: number;
  copySeconds: number | null;
  throttled: number;
  suspended: number;
}

async function load(containerUnits: number | null): Promise<Outcome> {
  const disk = new MemoryDisk('bench disk', Buffer.alloc(size, 1));
  const session =
    containerUnits === null
      ? null
      : new SnapshotSession({
          reader: disk,
          usedRanges: [{ start: 0, length: size }],
          container: new MemoryContainer({ capacityBytes: containerUnits * unitSize, slotSize: unitSize }),
          sink: slowSink,
        });
  session?.arm();
  const start = performance.now();
  const copying = session?.run();
  let copySeconds: number | null = null;
  const copyDone = copying?.then(() => {
    copySeconds = (performance.now() - start) / 1000;
  });
  const latencies: number[] = [];
  // Without a session the writers run as long as the shortest session's copy would; with one, until it ends.
  const deadline = start + 2000;
  const data = Buffer.alloc(4096, 2);
  const writers = Array.from({ length: writerCount }, async (_, writer) => {
    let position = writer * 7919 + 1;
    while (session ? copySeconds === null : performance.now() < deadline) {
      position = (position * 1103515245 + 12345) % 2147483648;
      const offset = (position % (size / 4096)) * 4096;
      const asked = performance.now();
      if (session) await session.beforeWrite(offset, 4096);
      await disk.write(offset, data);
      latencies.push(performance.now() - asked);
    }
  });
  await Promise.all([...writers, copyDone]);
  const stats = session?.stats();
  return {
    latencies: latencies.sort((a, b) => a - b),
    writes: latencies.length,
    seconds: (performance.now() - start) / 1000,
    copySeconds,
    throttled: stats?.writes.throttled ?? 0,
    suspended: stats?.writes.suspended ?? 0,
  };
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

console.log(
  `${(size / 2 ** 20).toFixed(0)} MiB in-memory disk, 64 KiB units, ${writerCount} writers of random 4 KiB writes`,
);
const runs: [string, number | null][] = [
  ['no snapshot (peer)', null],
  ['container 64 MiB', 1024],
  ['container 4 MiB', 64],
  ['container 256 KiB', 4],
];
let peerRate = 0;
for (const [label, units] of runs) {
  const outcome = await load(units);
  const rate = outcome.writes / outcome.seconds;
  if (units === null) peerRate = rate;
  console.log(
    `${label.padEnd(20)} p50 ${quantile(outcome.latencies, 0.5).toFixed(3)} ms  p99 ${quantile(outcome.latencies, 0.99).toFixed(2)} ms  ` +
      `max ${(outcome.latencies.at(-1) ?? 0).toFixed(1)} ms  ${rate.toFixed(0)} writes/s (${(rate / peerRate).toFixed(2)} of peer)` +
      (outcome.copySeconds === null
        ? ''
        : `  copy ${outcome.copySeconds.toFixed(2)} s, throttled ${outcome.throttled}, suspended ${outcome.suspended}`),
  );
}
