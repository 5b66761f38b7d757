// What a restore point costs as disks grow: synthetic maps built through the repository API (no terabytes are
// written: chunk ids are random, no pack holds them) for disks from 4 GB to 64 TB with 0%, 1% and 100% of
// units holding distinct chunks. For each: the point's stored size, build time, and time and peak memory of
// each step in its own process (point write, `points`, diff against a point one segment apart, restore
// planning's pass over the map) — beside the format 3 layout (one manifest holding the whole map) measured in
// the same run where it fits in memory. Then the goals: a 100 MB incremental of a 16 TB disk with 1 TB used,
// written by the real PointWriter, and `points` over 1,000 points of that disk; and the chunk index's memory.
//
//   npx node bench/point-scale.ts [--sizes 4G,64G,512G,2T,4T,16T,64T | none] [--fractions 0,0.01,1] [--max-distinct 70M]
//                                 [--points 1000] [--index-chunks 4M] [--no-format3] [--no-goals] [--keep]

import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ChunkIndex, type IndexEntry } from '../engine/repository/chunk-index.ts';
import {
  decodeLegacyManifest,
  encodeLegacyManifest,
  type LegacyManifest,
  MANIFEST_MAGIC,
  type Manifest,
} from '../engine/repository/manifest.ts';
import { diffPoints } from '../engine/repository/point-diff.ts';
import { SegmentList } from '../engine/repository/point-file.ts';
import { segmentUnits } from '../engine/repository/point-map.ts';
import { PointWriter } from '../engine/repository/point-writer.ts';
import { manifestName, newId, Repository } from '../engine/repository/repository.ts';
import { bit, type Segment, UNITS_PER_SEGMENT, usedDigest } from '../engine/repository/segment.ts';
import { UnitRanges } from '../engine/repository/unit-ranges.ts';
import { parseByteSize } from '../protocol/byte-size.ts';

function bytes(text: string): number {
  const value = parseByteSize(text);
  if (value === null) throw new Error(`not a size: ${text}`);
  return value;
}

const PASSWORD = 'bench passphrase for points';
const UNIT = 64 << 10;
const MiB = 1 << 20;
const self = fileURLToPath(import.meta.url);
const cli = fileURLToPath(new URL('../bin/diskline', import.meta.url));

const { values } = parseArgs({
  options: {
    op: { type: 'string' },
    repo: { type: 'string' },
    size: { type: 'string' },
    used: { type: 'string' },
    fraction: { type: 'string' },
    point: { type: 'string' },
    other: { type: 'string' },
    count: { type: 'string' },
    legacy: { type: 'boolean', default: false },
    sizes: { type: 'string', default: '4G,64G,512G,2T,4T,16T,64T' },
    fractions: { type: 'string', default: '0,0.01,1' },
    'max-distinct': { type: 'string', default: '70M' },
    points: { type: 'string', default: '1000' },
    'index-chunks': { type: 'string', default: '4M' },
    keep: { type: 'boolean', default: false },
    'no-format3': { type: 'boolean', default: false },
    'no-goals': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
  strict: false,
});

const rssMiB = () => process.resourceUsage().maxRSS / 1024;
/** When the step's own work began: after the repository is opened (the key derivation is the same for all). */
let workStarted = 0;
const openRepo = async (path: string) => {
  const repo = await Repository.open(path, { password: PASSWORD });
  workStarted = performance.now();
  return repo;
};
const count = (text: string) => Number(text.replace(/M$/, '')) * (text.endsWith('M') ? 1e6 : 1);

function source(size: number): Manifest['source'] {
  return { path: `/dev/bench-${size}`, model: null, serial: null, size, partitionTable: null };
}

function head(id: string, size: number, parent: string | null): Manifest {
  return {
    format: 2,
    id,
    time: new Date().toISOString(),
    complete: true,
    parent,
    consistency: 'offline',
    source: source(size),
    partitions: [],
    unitSize: UNIT,
    unitCount: Math.ceil(size / UNIT),
    unitsPerSegment: UNITS_PER_SEGMENT,
    stats: { usedBytes: size, changedBytes: 0, storedBytes: 0, zeroUnits: 0, newChunks: 0 },
  };
}

/**
 * Segment `index` of a synthetic disk: units below `usedUnits` used; of those, one in 1/fraction holds a distinct
 * (random) chunk id, the rest are zero. With `salt` the distinct ids differ (a changed segment).
 */
function syntheticSegment(unitCount: number, index: number, usedUnits: number, fraction: number): Segment {
  const units = segmentUnits(unitCount, UNITS_PER_SEGMENT, index);
  const first = index * UNITS_PER_SEGMENT;
  const used = new UnitRanges([{ start: 0, length: usedUnits * UNIT }], UNIT, unitCount).bits(first, units);
  const map = new Uint32Array(units);
  const every = fraction > 0 ? Math.round(1 / fraction) : 0;
  let distinct = 0;
  for (let u = 0; u < units; u++)
    if (every > 0 && first + u < usedUnits && (first + u) % every === 0) map[u] = ++distinct;
  return { unitCount: units, used, done: null, chunkIds: randomBytes(distinct * 32), units: map };
}

async function folderBytes(path: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(path).catch(() => [] as string[]))
    total += (await stat(join(path, name))).size;
  return total;
}

/** Child steps: each prints one JSON line with its time and the process's peak memory. */
async function runOp(): Promise<void> {
  workStarted = performance.now();
  const out: Record<string, unknown> = {};
  const repoPath = values.repo as string;
  if (values.op === 'noop') {
    // Baseline: Node and the engine's modules loaded.
  } else if (values.op === 'build') {
    const size = bytes(values.size as string);
    const unitCount = Math.ceil(size / UNIT);
    const usedUnits = values.used ? Math.ceil(bytes(values.used as string) / UNIT) : unitCount;
    const fraction = Number(values.fraction);
    const repo = await openRepo(repoPath);
    const id = newId();
    const segmentsBefore = await folderBytes(join(repoPath, 'segments'));
    if (values.legacy) {
      const every = fraction > 0 ? Math.round(1 / fraction) : 0;
      const units = new Uint32Array(unitCount);
      const chunkIds: Buffer[] = [];
      for (let u = 0; every > 0 && u < usedUnits; u += every) {
        chunkIds.push(randomBytes(32));
        units[u] = chunkIds.length;
      }
      const used = new UnitRanges([{ start: 0, length: usedUnits * UNIT }], UNIT, unitCount).bits(
        0,
        unitCount,
      );
      const { unitsPerSegment: _, ...rest } = head(id, size, null);
      const legacy: LegacyManifest = {
        ...rest,
        format: 1,
        unitsPerSegment: UNITS_PER_SEGMENT,
        used,
        chunkIds,
        units,
      };
      await repo.writeSealed(manifestName(id), MANIFEST_MAGIC, encodeLegacyManifest(legacy));
    } else {
      const list = SegmentList.empty(Math.ceil(unitCount / UNITS_PER_SEGMENT));
      for (let index = 0; index < list.length; index++) {
        const segment = syntheticSegment(unitCount, index, usedUnits, fraction);
        // As the writer does: every segment encoded and hashed; equal ones are stored once.
        list.set(
          index,
          await repo.writeSegment(segment),
          usedDigest(repo.keys.idKey, segment.used, segment.unitCount),
        );
      }
      await repo.writePoint(head(id, size, null), list);
    }
    out.point = id;
    out.pointFileBytes = (await stat(join(repoPath, manifestName(id)))).size;
    out.segmentBytes = (await folderBytes(join(repoPath, 'segments'))) - segmentsBefore;
    await repo.close();
  } else if (values.op === 'head') {
    const repo = await openRepo(repoPath);
    if (values.legacy) {
      const plaintext = await repo.readSealed(
        manifestName(values.point as string),
        MANIFEST_MAGIC,
        'manifest',
      );
      decodeLegacyManifest(plaintext, 'manifest');
    } else await repo.loadManifest(values.point as string);
    await repo.close();
  } else if (values.op === 'points') {
    const repo = await openRepo(repoPath);
    out.points = (await repo.listPoints()).points.length;
    await repo.close();
  } else if (values.op === 'diff') {
    const repo = await openRepo(repoPath);
    if (values.legacy) {
      // What the format 3 diff did: both manifests decoded whole, compared unit by unit.
      const [a, b] = await Promise.all(
        [values.point, values.other].map(async (id) =>
          decodeLegacyManifest(await repo.readSealed(manifestName(id as string), MANIFEST_MAGIC, 'm'), 'm'),
        ),
      );
      let changed = 0;
      for (let u = 0; u < a!.unitCount; u++) {
        const x = a!.units[u]!;
        const y = b!.units[u]!;
        if ((x === 0) !== (y === 0) || (x !== 0 && !a!.chunkIds[x - 1]!.equals(b!.chunkIds[y - 1]!)))
          changed++;
      }
      out.changedUnits = changed;
    } else {
      const [a, b] = await Promise.all([
        repo.openMap(values.point as string),
        repo.openMap(values.other as string),
      ]);
      const diff = await diffPoints(a, b);
      out.changedBytes = diff.changedBytes;
      out.segmentsRead = diff.segmentsRead;
    }
    await repo.close();
  } else if (values.op === 'plan') {
    // Restore planning's pass over the map: every used unit and the chunk it needs, in disk order.
    const repo = await openRepo(repoPath);
    let usedUnits = 0;
    let storedUnits = 0;
    if (values.legacy) {
      const m = decodeLegacyManifest(
        await repo.readSealed(manifestName(values.point as string), MANIFEST_MAGIC, 'm'),
        'm',
      );
      for (let u = 0; u < m.unitCount; u++) {
        if (!bit(m.used, u)) continue;
        usedUnits++;
        if (m.units[u] !== 0) storedUnits++;
      }
    } else {
      const map = await repo.openMap(values.point as string);
      for await (const { segment } of map.segments()) {
        for (let u = 0; u < segment.unitCount; u++) {
          if (!bit(segment.used, u)) continue;
          usedUnits++;
          if (segment.units[u] !== 0) storedUnits++;
        }
      }
    }
    Object.assign(out, { usedUnits, storedUnits });
    await repo.close();
  } else if (values.op === 'incremental') {
    // The real writer: parent = the synthetic point, `--size` bytes changed at 300 GB, `--used` of the disk used.
    const repo = await openRepo(repoPath);
    const parent = await repo.loadManifest(values.point as string);
    const change = bytes(values.count as string);
    const usedBytes = bytes(values.used as string);
    const at = 300e9 - (300e9 % UNIT);
    const before = {
      segments: await folderBytes(join(repoPath, 'segments')),
      index: await folderBytes(join(repoPath, 'index')),
    };
    const writer = await PointWriter.create(repo, {
      source: parent.source,
      partitions: [],
      usedRanges: [{ start: 0, length: usedBytes }],
      changedRanges: [{ start: at, length: change }],
      parent,
      consistency: 'offline',
    });
    const ranges = writer.rangesToRead();
    out.readBytes = ranges.reduce((sum, r) => sum + r.length, 0);
    for (const range of ranges)
      for (let offset = range.start; offset < range.start + range.length; offset += UNIT)
        await writer.writeUnit(offset, randomBytes(UNIT));
    await writer.finish();
    const id = writer.result.id;
    out.point = id;
    out.pointFileBytes = (await stat(join(repoPath, manifestName(id)))).size;
    out.newSegmentBytes = (await folderBytes(join(repoPath, 'segments'))) - before.segments;
    out.indexBytes = (await folderBytes(join(repoPath, 'index'))) - before.index;
    out.changedBytes = writer.result.stats.changedBytes;
    await repo.close();
  } else if (values.op === 'many') {
    // `--count` points of the parent's disk, each one segment apart from it (a new 1% segment each).
    const repo = await openRepo(repoPath);
    const map = await repo.openMap(values.point as string);
    const n = Number(values.count);
    for (let i = 0; i < n; i++) {
      const list = map.list.copy();
      const index = i % list.length;
      const segment = syntheticSegment(map.manifest.unitCount, index, map.manifest.unitCount, 0.01);
      list.set(
        index,
        await repo.writeSegment(segment),
        usedDigest(repo.keys.idKey, segment.used, segment.unitCount),
      );
      await repo.writePoint(head(newId(), map.manifest.source.size, map.manifest.id), list);
    }
    await repo.close();
  } else if (values.op === 'index') {
    // The chunk index in memory: `--count` entries, then as many lookups; `--legacy`: the Map of objects before.
    const n = count(values.count as string);
    const packs = Array.from({ length: Math.ceil(n / 8192) }, () => randomBytes(16).toString('hex'));
    const entry = (i: number): IndexEntry => ({
      pack: packs[Math.floor(i / 8192)]!,
      blobOffset: i,
      blobLength: 4096,
      rawOffset: 0,
      rawLength: UNIT,
    });
    const ids = randomBytes(Math.min(n, 1 << 20) * 32);
    const idOf = (i: number) => {
      const id = Buffer.from(ids.subarray((i % (1 << 20)) * 32, (i % (1 << 20)) * 32 + 32));
      // Distinct and uniform in the first bytes (a chunk id is a keyed hash): the pool repeats past 1 Mi.
      id.writeUInt32LE((id.readUInt32LE(0) ^ Math.imul(i, 2654435761)) >>> 0, 0);
      id.writeUInt32LE(i, 4);
      return id;
    };
    const heapBefore = process.memoryUsage().rss;
    let lookups = 0;
    let lookupMs = 0;
    if (values.legacy) {
      const map = new Map<string, IndexEntry>();
      for (let i = 0; i < n; i++) map.set(idOf(i).toString('base64'), entry(i));
      out.bytesPerChunk = (process.memoryUsage().rss - heapBefore) / n;
      const t = performance.now();
      for (let i = 0; i < n; i += 7, lookups++)
        if (!map.get(idOf(i).toString('base64'))) throw new Error('lost');
      lookupMs = performance.now() - t;
    } else {
      const index = new ChunkIndex();
      for (let i = 0; i < n; i++) index.set(idOf(i), entry(i));
      out.bytesPerChunk = (process.memoryUsage().rss - heapBefore) / n;
      out.tableBytesPerChunk = index.memoryBytes / n;
      const t = performance.now();
      for (let i = 0; i < n; i += 7, lookups++) if (!index.get(idOf(i))) throw new Error('lost');
      lookupMs = performance.now() - t;
    }
    out.lookupsPerSecond = Math.round(lookups / (lookupMs / 1000));
  } else if (values.op === 'open') {
    // Opening and listing, then (apart) loading the whole index: which of them grows with the repository.
    const t = performance.now();
    const repo = await openRepo(repoPath);
    out.points = (await repo.listPoints()).points.length;
    out.openAndListMs = performance.now() - t;
    const u = performance.now();
    out.indexEntries = (await repo.loadIndex()).size;
    out.loadIndexMs = performance.now() - u;
    await repo.close();
  } else if (values.op === 'fill-index') {
    const repo = await openRepo(repoPath);
    const n = count(values.count as string);
    const pack = randomBytes(16).toString('hex');
    const entries: [string, IndexEntry][] = [];
    for (let i = 0; i < n; i++)
      entries.push([
        randomBytes(32).toString('base64'),
        { pack, blobOffset: i, blobLength: 1, rawOffset: 0, rawLength: 1 },
      ]);
    await repo.writeIndexFiles(entries, 262_144);
    await repo.close();
  } else throw new Error(`unknown op ${values.op}`);
  out.ms = Math.round(performance.now() - workStarted);
  out.peakRssMiB = Math.round(rssMiB());
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function child(args: string[]): Record<string, number | string> | null {
  const run = spawnSync(process.execPath, ['--max-old-space-size=16384', self, ...args], {
    encoding: 'utf8',
    maxBuffer: 64 * MiB,
  });
  if (run.status !== 0) {
    process.stdout.write(
      `    (${args[1]} failed: ${(run.stderr || '').trim().split('\n').slice(-3).join(' | ')})\n`,
    );
    return null;
  }
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!);
}

const fmt = (bytes: number) =>
  bytes >= 1 << 30
    ? `${(bytes / 2 ** 30).toFixed(2)} GiB`
    : bytes >= MiB
      ? `${(bytes / MiB).toFixed(1)} MiB`
      : `${(bytes / 1024).toFixed(1)} KiB`;

async function main(): Promise<void> {
  if (values.help) {
    process.stdout.write(
      'usage: npx node bench/point-scale.ts [--sizes 4G,…,64T] [--fractions 0,0.01,1] [--max-distinct 70M] [--points 1000] [--index-chunks 4M] [--keep]\n' +
        '  --max-distinct  skip maps with more distinct chunks than this (64 TB at 100% is 1 G chunks: 34 GB of segments)\n',
    );
    return;
  }
  const work = await mkdtemp(join(tmpdir(), 'diskline-point-scale-'));
  const repoPath = join(work, 'repo');
  const init = spawnSync(cli, ['init', '--repo', repoPath], {
    env: { ...process.env, DISKLINE_PASSWORD: PASSWORD },
    encoding: 'utf8',
  });
  if (init.status !== 0) throw new Error(init.stderr);
  const maxDistinct = count(values['max-distinct'] as string);
  const base = child(['--op', 'noop', '--repo', repoPath]);
  process.stdout.write(
    `baseline: a process with the engine's modules loaded peaks at ${base?.peakRssMiB} MiB\n`,
  );
  process.stdout.write(
    'size  distinct | layout    stored       build ms  build MiB | head ms  MiB | diff ms  MiB  read | plan ms  MiB\n',
  );
  for (const sizeText of (values.sizes as string).split(',').filter((text) => text !== 'none')) {
    const size = bytes(sizeText);
    const units = Math.ceil(size / UNIT);
    for (const fraction of (values.fractions as string).split(',').map(Number)) {
      const distinct = Math.round(units * fraction);
      const label = `${sizeText.padEnd(5)} ${`${fraction * 100}%`.padEnd(8)}`;
      if (distinct > maxDistinct) {
        process.stdout.write(
          `${label} | skipped: ${distinct.toLocaleString()} distinct chunks is over --max-distinct\n`,
        );
        continue;
      }
      for (const legacy of values['no-format3'] ? [false] : [false, true]) {
        // The format 3 layout is one buffer of at most 4 GiB, decoded whole: measured while it fits.
        if (legacy && units * 4 + distinct * 100 > 1.5 * 2 ** 30) {
          process.stdout.write(
            `${label} | format 3  not measured: the whole map would take ${fmt(units * 4 + distinct * 100)} in memory\n`,
          );
          continue;
        }
        const flag = legacy ? ['--legacy'] : [];
        const built = child([
          '--op',
          'build',
          '--repo',
          repoPath,
          '--size',
          sizeText,
          '--fraction',
          String(fraction),
          ...flag,
        ]);
        if (!built) continue;
        // A second point one segment apart: what diff compares (the format 3 one against itself: its cost is
        // decoding both whole, whatever differs).
        const point = String(built.point);
        let otherId = point;
        if (!legacy) {
          child(['--op', 'many', '--repo', repoPath, '--point', point, '--count', '1']);
          const repo = await openRepo(repoPath);
          otherId = (await repo.listPoints()).points.find((p) => p.parent === point)?.id ?? point;
          await repo.close();
        }
        const h = child(['--op', 'head', '--repo', repoPath, '--point', point, ...flag]);
        const d = child(['--op', 'diff', '--repo', repoPath, '--point', point, '--other', otherId, ...flag]);
        const p = child(['--op', 'plan', '--repo', repoPath, '--point', point, ...flag]);
        const stored = Number(built.pointFileBytes) + Number(built.segmentBytes ?? 0);
        process.stdout.write(
          `${label} | ${(legacy ? 'format 3' : 'segments').padEnd(9)} ${fmt(stored).padEnd(12)} ${String(built.ms).padStart(8)}  ${String(built.peakRssMiB).padStart(9)} | ${String(h?.ms).padStart(7)} ${String(h?.peakRssMiB).padStart(4)} | ${String(d?.ms).padStart(7)} ${String(d?.peakRssMiB).padStart(4)} ${String(d?.segmentsRead ?? 'all').padStart(5)} | ${String(p?.ms).padStart(7)} ${String(p?.peakRssMiB).padStart(4)}\n`,
        );
        // Points of this size are not needed again: keep the repository small for the next ones.
        await rm(join(repoPath, 'points'), { recursive: true, force: true });
        await rm(join(repoPath, 'segments'), { recursive: true, force: true });
        execFileSync('mkdir', ['-m', '700', join(repoPath, 'points')]);
      }
    }
  }

  // The goals on a 16 TB disk with 1 TB used (every used unit distinct).
  if (values['no-goals']) {
    await rm(work, { recursive: true, force: true });
    return;
  }
  process.stdout.write('\n16 TB disk, 1 TB used (16.8 M distinct chunks):\n');
  const baseBuilt = child([
    '--op',
    'build',
    '--repo',
    repoPath,
    '--size',
    '16T',
    '--used',
    '1T',
    '--fraction',
    '1',
  ]);
  if (baseBuilt) {
    process.stdout.write(
      `  full point (synthetic): ${fmt(Number(baseBuilt.pointFileBytes))} point file + ${fmt(Number(baseBuilt.segmentBytes))} of segments; built in ${baseBuilt.ms} ms, peak ${baseBuilt.peakRssMiB} MiB\n`,
    );
    const inc = child([
      '--op',
      'incremental',
      '--repo',
      repoPath,
      '--point',
      String(baseBuilt.point),
      '--count',
      '100M',
      '--used',
      '1T',
    ]);
    if (inc) {
      const metadata = Number(inc.pointFileBytes) + Number(inc.newSegmentBytes);
      process.stdout.write(
        `  100 MB incremental (PointWriter, ${fmt(Number(inc.readBytes))} read): point metadata written ${fmt(metadata)} (point file ${fmt(Number(inc.pointFileBytes))} + new segments ${fmt(Number(inc.newSegmentBytes))}; goal < 5 MB), chunk index ${fmt(Number(inc.indexBytes))}; ${inc.ms} ms, peak ${inc.peakRssMiB} MiB\n`,
      );
      const restorePlan = child(['--op', 'plan', '--repo', repoPath, '--point', String(inc.point)]);
      process.stdout.write(
        `  restore planning of the incremental: ${restorePlan?.ms} ms, peak ${restorePlan?.peakRssMiB} MiB\n`,
      );
      const d = child([
        '--op',
        'diff',
        '--repo',
        repoPath,
        '--point',
        String(baseBuilt.point),
        '--other',
        String(inc.point),
      ]);
      process.stdout.write(
        `  diff full → incremental: ${d?.ms} ms, peak ${d?.peakRssMiB} MiB, ${d?.segmentsRead} segment pairs read, ${fmt(Number(d?.changedBytes))} changed\n`,
      );
    }
    const n = Number(values.points);
    const many = child([
      '--op',
      'many',
      '--repo',
      repoPath,
      '--point',
      String(baseBuilt.point),
      '--count',
      String(n - 2),
    ]);
    process.stdout.write(
      `  ${n - 2} more points written in ${many?.ms} ms; points/ holds ${fmt(await folderBytes(join(repoPath, 'points')))}\n`,
    );
    const listed = child(['--op', 'points', '--repo', repoPath]);
    process.stdout.write(
      `  points over ${listed?.points} points (library): ${listed?.ms} ms, peak ${listed?.peakRssMiB} MiB (goal < 1 s, < 200 MB)\n`,
    );
    const t = performance.now();
    const run = spawnSync('/usr/bin/time', ['-f', '%M', cli, 'points', '--repo', repoPath, '--json'], {
      env: { ...process.env, DISKLINE_PASSWORD: PASSWORD },
      encoding: 'utf8',
      maxBuffer: 256 * MiB,
    });
    const wall = Math.round(performance.now() - t);
    const maxKiB = Number(run.stderr.trim().split('\n').at(-1));
    process.stdout.write(
      `  diskline points --json: exit ${run.status}, ${wall} ms wall (process start included), peak ${Math.round(maxKiB / 1024)} MiB\n`,
    );
  }

  // The chunk index.
  const chunks = values['index-chunks'] as string;
  process.stdout.write(`\nchunk index in memory, ${chunks} chunks:\n`);
  for (const legacy of [false, true]) {
    const r = child(['--op', 'index', '--count', chunks, ...(legacy ? ['--legacy'] : [])]);
    if (r)
      process.stdout.write(
        `  ${legacy ? 'Map of objects (before)' : 'flat tables (now)     '}: ${Number(r.bytesPerChunk).toFixed(1)} B/chunk (RSS)${r.tableBytesPerChunk ? `, ${Number(r.tableBytesPerChunk).toFixed(1)} B/chunk in tables` : ''}, ${Number(r.lookupsPerSecond).toLocaleString()} lookups/s, peak ${r.peakRssMiB} MiB\n`,
      );
  }
  const before = child(['--op', 'open', '--repo', repoPath]);
  child(['--op', 'fill-index', '--repo', repoPath, '--count', chunks]);
  const after = child(['--op', 'open', '--repo', repoPath]);
  process.stdout.write(
    `  open + points: ${before?.openAndListMs} ms with an empty index, ${after?.openAndListMs} ms with ${after?.indexEntries} entries (${fmt(await folderBytes(join(repoPath, 'index')))} of index files): the index is not read to open or list; loading it (backup, restore) took ${after?.loadIndexMs} ms\n`,
  );
  if (values.keep) process.stdout.write(`work directory kept: ${work}\n`);
  else await rm(work, { recursive: true, force: true });
}

if (values.op) await runOp();
else await main();
