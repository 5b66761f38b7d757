// Write performance through the tap against a plain loop device, measured with fio in the same run:
// 4 KiB random writes at QD16 and 1 MiB sequential writes — plain loop (direct I/O on the image), our tap with
// no backup, and our tap during a backup (throughput and the writers' p50/p99 latency) — then peak container
// use on a rewrite-heavy workload (random writes over an eighth of the device, three quarters in) with
// copy-order hints ("ranges being written go first") vs plain disk order. Peers: a buffered plain loop and,
// with --js-fuse, the same server written with a JS FUSE binding (fuse-native).
// Usage: npx node bench/tap-vs-loop.ts [--size 256M] [--seconds 10] [--js-fuse DIR]. Needs root, /dev/fuse, loop, fio.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { MemoryContainer } from '../engine/container/memory.ts';
import { openReader } from '../engine/device/open.ts';
import { SnapshotSession } from '../engine/snapshot/session.ts';
import type { UnitSink } from '../engine/snapshot/types.ts';
import { type AttachedVolume, attachVolume } from '../engine/tap/attach.ts';
import { takeConsistentPoint } from '../engine/tap/consistent-point.ts';
import { tapUnavailableReason } from '../engine/tap/system-state.ts';
import { parseByteSize } from '../protocol/byte-size.ts';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256M' },
    seconds: { type: 'string', default: '10' },
    // A directory where `npm install fuse-native` was run: adds that JS FUSE binding as a peer.
    'js-fuse': { type: 'string' },
  },
  allowPositionals: true,
});
const MiB = 1024 * 1024;
const size = parseSize(values.size);
const seconds = Number(values.seconds);

function parseSize(text: string): number {
  const bytes = parseByteSize(text);
  if (bytes === null) throw new Error(`--size ${text}: expected a size such as 256M, 4G or 2T`);
  return bytes;
}

interface FioResult {
  iops: number;
  mibPerSecond: number;
  p50us: number;
  p99us: number;
}

async function fio(
  device: string,
  pattern: 'rand4k' | 'seq1m' | 'hot4k',
  runSeconds = seconds,
): Promise<FioResult> {
  const job =
    pattern === 'rand4k'
      ? ['--rw=randwrite', '--bs=4k', '--iodepth=16']
      : pattern === 'seq1m'
        ? ['--rw=write', '--bs=1m', '--iodepth=4']
        : [
            '--rw=randwrite',
            '--bs=4k',
            '--iodepth=16',
            `--offset=${Math.floor((size * 3) / 4)}`,
            `--size=${Math.floor(size / 8)}`,
          ];
  const { stdout } = await run('fio', [
    '--name=bench',
    `--filename=${device}`,
    '--direct=1',
    '--ioengine=libaio',
    '--time_based',
    `--runtime=${runSeconds}`,
    '--randrepeat=0',
    '--output-format=json',
    ...job,
  ]);
  const write = JSON.parse(stdout).jobs[0].write;
  const percentiles = write.clat_ns.percentile ?? {};
  return {
    iops: write.iops,
    mibPerSecond: write.bw_bytes / MiB,
    p50us: (percentiles['50.000000'] ?? 0) / 1000,
    p99us: (percentiles['99.000000'] ?? 0) / 1000,
  };
}

function show(label: string, result: FioResult, peer?: FioResult): string {
  const ratio = peer ? `  (${((result.iops / peer.iops) * 100).toFixed(0)}% of plain loop)` : '';
  return `${label.padEnd(34)} ${result.iops.toFixed(0).padStart(7)} IOPS ${result.mibPerSecond.toFixed(1).padStart(8)} MiB/s  p50 ${result.p50us.toFixed(0).padStart(6)} µs  p99 ${result.p99us.toFixed(0).padStart(7)} µs${ratio}`;
}

/** The same single-file server written with a JS FUSE binding (fuse-native): every read and write in JS. */
const jsFuseHost = `
const Fuse = require('fuse-native');
const fs = require('node:fs');
const [image, mnt] = process.argv.slice(1);
const fd = fs.openSync(image, 'r+');
const size = fs.fstatSync(fd).size;
const now = new Date();
const stat = (mode, size) => ({ mtime: now, atime: now, ctime: now, size, mode, uid: 0, gid: 0 });
const fuse = new Fuse(mnt, {
  readdir: (path, cb) => cb(0, ['volume']),
  getattr: (path, cb) => path === '/' ? cb(0, stat(0o40700, 4096)) : path === '/volume' ? cb(0, stat(0o100600, size)) : cb(Fuse.ENOENT),
  open: (path, flags, cb) => cb(0, 1),
  release: (path, handle, cb) => cb(0),
  read: (path, handle, buf, len, pos, cb) => fs.read(fd, buf, 0, len, pos, (err, n) => cb(err ? Fuse.EIO : n)),
  write: (path, handle, buf, len, pos, cb) => fs.write(fd, buf, 0, len, pos, (err, n) => cb(err ? Fuse.EIO : n)),
  fsync: (path, datasync, handle, cb) => fs.fdatasync(fd, () => cb(0)),
}, { force: true, mkdir: true, allowOther: true, directIO: true });
fuse.mount((err) => { if (err) { console.error(err.message); process.exit(1); } console.log('mounted'); });
process.on('SIGTERM', () => fuse.unmount(() => process.exit(0)));
`;

async function measureJsFuse(
  image: string,
  dir: string,
  moduleDir: string,
): Promise<{ rand: FioResult; seq: FioResult }> {
  const { spawn } = await import('node:child_process');
  const mnt = join(dir, 'js-fuse');
  const host = spawn(process.execPath, ['-e', jsFuseHost, image, mnt], {
    env: { ...process.env, NODE_PATH: join(moduleDir, 'node_modules') },
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    host.stdout.on('data', (chunk) => {
      out += chunk;
      if (out.includes('mounted')) resolve();
    });
    host.on('exit', (code) => reject(new Error(`the fuse-native host exited with ${code}`)));
  });
  try {
    const loop = (
      await run('losetup', ['--find', '--show', '--direct-io=on', join(mnt, 'volume')])
    ).stdout.trim();
    try {
      return { rand: await fio(loop, 'rand4k'), seq: await fio(loop, 'seq1m') };
    } finally {
      await run('losetup', ['-d', loop]);
    }
  } finally {
    const exited = new Promise((resolve) => host.on('exit', resolve));
    host.kill('SIGTERM');
    await exited;
  }
}

/** A sink that discards, paced to `bytesPerSecond` (a repository's ingest rate), so the backup spans the run. */
function pacedSink(bytesPerSecond: number): UnitSink {
  const started = performance.now();
  let bytes = 0;
  return {
    async writeUnit(_offset, data) {
      bytes += data.length;
      const due = (bytes / bytesPerSecond) * 1000 - (performance.now() - started);
      if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
    },
    async finish() {},
    async abort() {},
  };
}

/** Runs `body` while a backup of the volume runs; returns its result and the session's. */
async function duringBackup<T>(
  volume: AttachedVolume,
  options: { hints: boolean; containerBytes: number; paceSeconds: number },
  body: () => Promise<T>,
) {
  const unitSize = 64 * 1024;
  const reader = await openReader(volume.source);
  const session = new SnapshotSession({
    reader,
    usedRanges: [{ start: 0, length: volume.size }],
    unitSize,
    container: new MemoryContainer({ capacityBytes: options.containerBytes, slotSize: unitSize }),
    sink: pacedSink(volume.size / options.paceSeconds),
    onSettle: (first, count) => volume.settleUnits(first, count),
  });
  // Copy-order hints: the neighbourhood of a write is likely written again soon; copying it next means later
  // writes there pass without a trip through the container.
  const hinted = {
    unitSize,
    arm: () => session.arm(),
    forEachPendingRun: (callback: (first: number, count: number) => void) =>
      session.forEachPendingRun(callback),
    beforeWrite: (offset: number, length: number) => {
      const start = Math.max(0, offset - MiB);
      session.hint({ start, length: Math.min(volume.size - start, 2 * MiB + length) }, 'writing-now');
      return session.beforeWrite(offset, length);
    },
  };
  try {
    await takeConsistentPoint(volume, options.hints ? hinted : session);
    const copying = session.run();
    const measured = await body();
    const result = await copying;
    return { measured, result };
  } finally {
    await volume.setInterceptor(null, unitSize);
    await reader.close();
  }
}

async function main(): Promise<void> {
  const unavailable = tapUnavailableReason();
  if (unavailable) {
    process.stdout.write(`skipped: ${unavailable}\n`);
    return;
  }
  const dir = await mkdtemp(join(tmpdir(), 'diskline-bench-tap-'));
  try {
    const image = join(dir, 'disk.img');
    // Fully allocated, so neither side pays for allocating blocks of a sparse file.
    await run('fallocate', ['-l', String(size), image]);
    await run('dd', [
      'if=/dev/zero',
      `of=${image}`,
      'bs=1M',
      `count=${size / MiB}`,
      'conv=notrunc',
      'status=none',
    ]);
    process.stdout.write(
      `image ${size / MiB} MiB, ${seconds} s per fio run, ${(await run('nproc')).stdout.trim()} cores\n`,
    );

    const { stdout } = await run('losetup', ['--find', '--show', '--direct-io=on', image]);
    const plainLoop = stdout.trim();
    let plainRand: FioResult;
    let plainSeq: FioResult;
    try {
      plainRand = await fio(plainLoop, 'rand4k');
      plainSeq = await fio(plainLoop, 'seq1m');
    } finally {
      await run('losetup', ['-d', plainLoop]);
    }
    process.stdout.write(
      `${show('plain loop, 4k rand QD16', plainRand)}\n${show('plain loop, 1M seq', plainSeq)}\n`,
    );
    // The tap writes its backing file through the page cache (made durable by the flushes the loop device passes
    // down), so a buffered plain loop is its like-for-like peer; shown for honesty beside the direct-I/O one.
    const buffered = (await run('losetup', ['--find', '--show', '--direct-io=off', image])).stdout.trim();
    let bufferedRand: FioResult;
    let bufferedSeq: FioResult;
    try {
      bufferedRand = await fio(buffered, 'rand4k');
      bufferedSeq = await fio(buffered, 'seq1m');
    } finally {
      await run('losetup', ['-d', buffered]);
    }
    process.stdout.write(
      `${show('plain loop buffered, 4k rand QD16', bufferedRand)}\n${show('plain loop buffered, 1M seq', bufferedSeq)}\n`,
    );

    const jsFuse = values['js-fuse'] ? await measureJsFuse(image, dir, values['js-fuse']) : null;
    if (jsFuse) {
      process.stdout.write(`${show('JS FUSE binding, 4k rand QD16', jsFuse.rand, plainRand)}\n`);
      process.stdout.write(
        `${show('JS FUSE binding, 1M seq', jsFuse.seq)}  (${((jsFuse.seq.mibPerSecond / plainSeq.mibPerSecond) * 100).toFixed(0)}% of plain loop bandwidth)\n`,
      );
    } else
      process.stdout.write(
        'JS FUSE binding: not measured (give --js-fuse DIR where `npm install fuse-native` ran)\n',
      );
    const volume = await attachVolume(image, { partscan: false });
    try {
      if (volume.notes.length) process.stdout.write(`note: ${volume.notes.join('; ')}\n`);
      const tapRand = await fio(volume.loopDevice, 'rand4k');
      const tapSeq = await fio(volume.loopDevice, 'seq1m');
      process.stdout.write(
        `${show('tap, no backup, 4k rand QD16', tapRand, plainRand)}  (${((tapRand.iops / bufferedRand.iops) * 100).toFixed(0)}% of buffered loop)\n`,
      );
      process.stdout.write(
        `${show('tap, no backup, 1M seq', tapSeq)}  (${((tapSeq.mibPerSecond / plainSeq.mibPerSecond) * 100).toFixed(0)}% of plain loop bandwidth)\n`,
      );
      const rand = await duringBackup(
        volume,
        { hints: false, containerBytes: 64 * MiB, paceSeconds: seconds },
        () => fio(volume.loopDevice, 'rand4k'),
      );
      process.stdout.write(
        `${show('tap during backup, 4k rand QD16', rand.measured, plainRand)}  backup ${(rand.result.durationMs / 1000).toFixed(1)} s, ${rand.result.preservedUnits} units preserved, ${rand.result.writes.throttled} throttled, ${rand.result.writes.suspended} suspended\n`,
      );
      const seq = await duringBackup(
        volume,
        { hints: false, containerBytes: 64 * MiB, paceSeconds: seconds },
        () => fio(volume.loopDevice, 'seq1m'),
      );
      process.stdout.write(
        `${show('tap during backup, 1M seq', seq.measured)}  (${((seq.measured.mibPerSecond / plainSeq.mibPerSecond) * 100).toFixed(0)}% of plain loop bandwidth)  backup ${(seq.result.durationMs / 1000).toFixed(1)} s, ${seq.result.preservedUnits} units preserved\n`,
      );
      // Rewrite-heavy: random 4 KiB writes over the first eighth of the device, during a backup; how much
      // container does each copy order need at peak?
      for (const hints of [false, true]) {
        const hot = await duringBackup(
          volume,
          { hints, containerBytes: 256 * MiB, paceSeconds: seconds },
          () => fio(volume.loopDevice, 'hot4k'),
        );
        process.stdout.write(
          `rewrite-heavy, ${hints ? 'hints (written ranges first)' : 'plain disk order'.padEnd(28)}: peak container ${(hot.result.peakContainerBytes / MiB).toFixed(1)} MiB, ${hot.result.preservedUnits} units preserved, writers ${hot.measured.iops.toFixed(0)} IOPS p99 ${hot.measured.p99us.toFixed(0)} µs\n`,
        );
      }
    } finally {
      await volume.detach();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
