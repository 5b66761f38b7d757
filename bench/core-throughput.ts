// Copy throughput of the snapshot core (SnapshotSession with a discarding sink) against `cat IMG > /dev/null`
// on the same image, both from the page cache (each source read once before timing) — the core must not be
// the bottleneck. With --cold (root), the page cache is dropped before every run instead. Also shows the
// core while writers keep hitting not-yet-copied units (preserves through a memory container).
//
//   npx node bench/core-throughput.ts [--size 256M] [--rounds 3] [--cold]

import { execFileSync, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MemoryContainer } from '../engine/container/memory.ts';
import { openReader } from '../engine/device/open.ts';
import type { BlockReader } from '../engine/device/types.ts';
import { SnapshotSession } from '../engine/snapshot/session.ts';
import type { UnitSink } from '../engine/snapshot/types.ts';

function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([KMG]?)i?B?$/i.exec(text.trim());
  if (!match) throw new Error(`--size ${text}: expected e.g. 256M or 1G`);
  const scale = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[
    match[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'
  ];
  return Math.floor(Number(match[1]) * scale);
}

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256M' },
    cold: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '3' },
  },
  strict: false,
});
const size = Math.floor(parseSize(String(values.size)) / 65536) * 65536;
const cold = Boolean(values.cold);
const rounds = Math.max(1, Number(values.rounds));
if (cold && process.getuid?.() !== 0) throw new Error('--cold drops the page cache and needs root');

/** A plain buffered reader (page cache), as a peer for `cat`. */
async function bufferedReader(path: string): Promise<BlockReader> {
  const handle = await open(path, 'r');
  return {
    path,
    size,
    logicalSectorSize: 512,
    async read(offset, length) {
      const data = Buffer.allocUnsafe(Math.min(length, size - offset));
      const { bytesRead } = await handle.read(data, 0, data.length, offset);
      return data.subarray(0, bytesRead);
    },
    close: () => handle.close(),
  };
}

const discard: UnitSink = {
  writeUnit: async () => {},
  finish: async () => {},
  abort: async () => {},
};

function dropCaches(): void {
  if (!cold) return;
  execFileSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

function catSeconds(path: string): number {
  dropCaches();
  const start = process.hrtime.bigint();
  const run = spawnSync('sh', ['-c', 'cat "$1" > /dev/null', 'sh', path]);
  if (run.status !== 0) throw new Error(`cat failed: ${run.stderr}`);
  return seconds(start);
}

interface CoreRun {
  readRequestBytes: number;
  readsInFlight: number;
  writers: number;
}

async function coreSeconds(
  reader: BlockReader,
  run: CoreRun,
): Promise<{ seconds: number; preserved: number }> {
  dropCaches();
  const session = new SnapshotSession({
    reader,
    usedRanges: [{ start: 0, length: size }],
    container: new MemoryContainer({ capacityBytes: 64 << 20, slotSize: 65536 }),
    sink: discard,
    readRequestBytes: run.readRequestBytes,
    readsInFlight: run.readsInFlight,
  });
  session.arm();
  const start = process.hrtime.bigint();
  const copying = session.run();
  let done = false;
  const writers = Array.from({ length: run.writers }, async (_, writer) => {
    // Writers only ask (the image is not changed): each 64 KiB request at a spread-out offset.
    let position = writer * 7919;
    while (!done) {
      position = (position * 1103515245 + 12345) % 2147483648;
      await session.beforeWrite((position % (size / 65536)) * 65536, 65536);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  });
  const result = await copying;
  const elapsed = seconds(start);
  done = true;
  await Promise.all(writers);
  return { seconds: elapsed, preserved: result.preservedUnits };
}

const gbps = (bytes: number, s: number) => (bytes / s / 1e9).toFixed(2);

/** Node's own sequential reads through the same reader: the cost the core adds is the gap to this. */
async function plainReadSeconds(reader: BlockReader, request: number): Promise<number> {
  dropCaches();
  const start = process.hrtime.bigint();
  for (let offset = 0; offset < size; offset += request)
    await reader.read(offset, Math.min(request, size - offset));
  return seconds(start);
}

const dir = await mkdtemp(join(tmpdir(), 'diskline-bench-'));
try {
  const path = join(dir, 'source.img');
  const handle = await open(path, 'w');
  const chunk = Buffer.allocUnsafe(1 << 20);
  for (let offset = 0; offset < size; offset += chunk.length) {
    randomFillSync(chunk);
    await handle.write(chunk, 0, Math.min(chunk.length, size - offset), offset);
  }
  await handle.close();
  const mode = cold
    ? 'cold (page cache dropped before each run)'
    : 'page cache (warm: image read once before timing)';
  console.log(
    `image ${(size / 2 ** 20).toFixed(0)} MiB of random bytes, 64 KiB units; reads from the ${mode}`,
  );
  console.log(
    `best of ${rounds} interleaved rounds each (the machine may be shared: compare within this run)`,
  );
  catSeconds(path); // warm-up read

  const buffered = await bufferedReader(path);
  const direct = await openReader(path);
  const peers: [string, () => Promise<number>][] = [
    ['cat IMG > /dev/null', async () => catSeconds(path)],
    ['node sequential 1 MiB reads (no core)', () => plainReadSeconds(buffered, 1 << 20)],
  ];
  const cores: [string, BlockReader, CoreRun][] = [
    [
      'core, buffered, 1 MiB x4 in flight',
      buffered,
      { readRequestBytes: 1 << 20, readsInFlight: 4, writers: 0 },
    ],
    [
      'core, buffered, 1 MiB x2 in flight',
      buffered,
      { readRequestBytes: 1 << 20, readsInFlight: 2, writers: 0 },
    ],
    [
      'core, buffered, 4 MiB x2 in flight',
      buffered,
      { readRequestBytes: 4 << 20, readsInFlight: 2, writers: 0 },
    ],
    [
      'core, openReader (O_DIRECT if built)',
      direct,
      { readRequestBytes: 1 << 20, readsInFlight: 4, writers: 0 },
    ],
    ['core, 1 MiB x4, 4 busy writers', buffered, { readRequestBytes: 1 << 20, readsInFlight: 4, writers: 4 }],
  ];
  const best = new Map<string, number>();
  const preserved = new Map<string, number>();
  const keep = (label: string, value: number) =>
    best.set(label, Math.min(best.get(label) ?? Infinity, value));
  for (let round = 0; round <= rounds; round++) {
    // Round 0 warms up (JIT, page cache) and is not counted.
    for (const [label, measure] of peers) {
      const value = await measure();
      if (round > 0) keep(label, value);
    }
    for (const [label, reader, run] of cores) {
      const result = await coreSeconds(reader, run);
      if (round > 0) keep(label, result.seconds);
      preserved.set(label, result.preserved);
    }
  }
  const cat = best.get('cat IMG > /dev/null')!;
  const plain = best.get('node sequential 1 MiB reads (no core)')!;
  for (const [label, value] of best) {
    const extra = preserved.get(label) ? `, ${preserved.get(label)} units preserved for writers` : '';
    console.log(
      `${label.padEnd(40)} ${gbps(size, value).padStart(6)} GB/s  ${(cat / value).toFixed(2)} of cat  ` +
        `${(plain / value).toFixed(2)} of node reads${extra}`,
    );
  }
  // The write path's fast case (units already copied): what every write pays once the copy has passed.
  const fastPath = new SnapshotSession({
    reader: buffered,
    usedRanges: [{ start: 0, length: size }],
    container: new MemoryContainer({ capacityBytes: 1 << 20, slotSize: 65536 }),
    sink: discard,
  });
  fastPath.arm();
  await fastPath.run();
  const calls = 2_000_000;
  const start = process.hrtime.bigint();
  let position = 1;
  for (let i = 0; i < calls; i++) {
    position = (position * 1103515245 + 12345) % 2147483648;
    void fastPath.beforeWrite((position % (size / 4096)) * 4096, 4096);
  }
  const perCall = (seconds(start) / calls) * 1e9;
  console.log(`beforeWrite fast path (copied units, 4 KiB writes): ${perCall.toFixed(0)} ns per call`);
  await buffered.close();
  await direct.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
