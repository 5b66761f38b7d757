// Copy throughput of the snapshot core (SnapshotSession with a discarding sink) against `cat IMG > /dev/null`
// and plain sequential reads in Node on the same image, all from the page cache (each source read once before
// timing) — the core must not be the bottleneck. With --cold (root), the page cache is dropped before every
// run instead. Also the core while writers keep hitting not-yet-copied units (preserves through a memory
// container). Wall-clock figures suffer on a shared machine; CPU seconds per GB (user + system, all threads)
// say what each costs regardless of who else runs.
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
import { parseByteSize } from '../protocol/byte-size.ts';

function parseSize(text: string): number {
  const bytes = parseByteSize(text);
  if (bytes === null) throw new Error(`--size ${text}: expected a size such as 256M, 4G or 2T`);
  return bytes;
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

/** A plain buffered reader (page cache) with readInto, so the copier reuses its buffers like `cat` does. */
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
    async readInto(target, offset) {
      const { bytesRead } = await handle.read(target, 0, Math.min(target.length, size - offset), offset);
      return bytesRead;
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

interface Measured {
  wall: number;
  cpu: number;
  preserved?: number;
}

/** Runs `body`, measuring wall-clock and this process's CPU seconds (all threads, user + system). */
async function measure(body: () => Promise<number | undefined>): Promise<Measured> {
  dropCaches();
  const cpuBefore = process.cpuUsage();
  const start = process.hrtime.bigint();
  const preserved = await body();
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  return { wall, cpu: (cpu.user + cpu.system) / 1e6, preserved };
}

/** cat's own wall time and CPU, timed by bash around cat alone (not the spawning of bash). */
function catRun(path: string): Measured {
  dropCaches();
  const script = 'TIMEFORMAT="%3R %3U %3S"; { time cat "$1" > /dev/null; } 2>&1';
  const run = spawnSync('bash', ['-c', script, 'bash', path], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`cat failed: ${run.stderr}`);
  const [wall, user, system] = run.stdout.trim().split(/\s+/).map(Number) as [number, number, number];
  return { wall, cpu: user + system };
}

interface CoreRun {
  readRequestBytes: number;
  readsInFlight: number;
  writers: number;
}

async function coreCopy(reader: BlockReader, run: CoreRun): Promise<number> {
  const session = new SnapshotSession({
    reader,
    usedRanges: [{ start: 0, length: size }],
    container: new MemoryContainer({ capacityBytes: 64 << 20, slotSize: 65536 }),
    sink: discard,
    readRequestBytes: run.readRequestBytes,
    readsInFlight: run.readsInFlight,
  });
  session.arm();
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
  done = true;
  await Promise.all(writers);
  return result.preservedUnits;
}

async function plainReads(reader: BlockReader, request: number): Promise<undefined> {
  for (let offset = 0; offset < size; offset += request)
    await reader.read(offset, Math.min(request, size - offset));
  return undefined;
}

const gbps = (bytes: number, s: number) => (bytes / s / 1e9).toFixed(2);
const gib = size / 2 ** 30;

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
    ? 'device (cold: page cache dropped before each run)'
    : 'page cache (warm: image read once before timing)';
  console.log(
    `image ${(size / 2 ** 20).toFixed(0)} MiB of random bytes, 64 KiB units; reads from the ${mode}`,
  );
  console.log(`best of ${rounds} interleaved rounds each; CPU = user + system seconds of all threads`);
  catRun(path); // warm-up read

  const buffered = await bufferedReader(path);
  const direct = await openReader(path);
  const runs: [string, () => Promise<Measured>][] = [
    ['cat IMG > /dev/null', async () => catRun(path)],
    ['node 1 MiB reads, fresh buffers (no core)', () => measure(() => plainReads(buffered, 1 << 20))],
  ];
  const cores: [string, BlockReader, CoreRun][] = [
    [
      'core, 1 MiB x2 in flight (default)',
      buffered,
      { readRequestBytes: 1 << 20, readsInFlight: 2, writers: 0 },
    ],
    ['core, 1 MiB x4 in flight', buffered, { readRequestBytes: 1 << 20, readsInFlight: 4, writers: 0 }],
    ['core, 4 MiB x2 in flight', buffered, { readRequestBytes: 4 << 20, readsInFlight: 2, writers: 0 }],
    [
      'core, openReader (O_DIRECT if built)',
      direct,
      { readRequestBytes: 1 << 20, readsInFlight: 2, writers: 0 },
    ],
    ['core, default, 4 busy writers', buffered, { readRequestBytes: 1 << 20, readsInFlight: 2, writers: 4 }],
  ];
  for (const [label, reader, run] of cores) runs.push([label, () => measure(() => coreCopy(reader, run))]);
  const best = new Map<string, Measured>();
  for (let round = 0; round <= rounds; round++) {
    // Round 0 warms up (JIT, page cache) and is not counted.
    for (const [label, run] of runs) {
      const value = await run();
      if (round === 0) continue;
      const kept = best.get(label);
      best.set(label, {
        wall: Math.min(kept?.wall ?? Infinity, value.wall),
        cpu: Math.min(kept?.cpu ?? Infinity, value.cpu),
        preserved: value.preserved,
      });
    }
  }
  const cat = best.get('cat IMG > /dev/null')!;
  for (const [label, value] of best) {
    const extra = value.preserved ? `, ${value.preserved} units preserved for writers` : '';
    console.log(
      `${label.padEnd(42)} ${gbps(size, value.wall).padStart(6)} GB/s (${(cat.wall / value.wall).toFixed(2)} of cat)  ` +
        `CPU ${(value.cpu / gib).toFixed(2)} s/GiB (${(value.cpu / Math.max(cat.cpu, 1e-3)).toFixed(1)}x cat)${extra}`,
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
  const perCall = Number(process.hrtime.bigint() - start) / calls;
  console.log(`beforeWrite fast path (copied units, 4 KiB writes): ${perCall.toFixed(0)} ns per call`);
  await buffered.close();
  await direct.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
