// A file system that lies is not believed. Damage to an allocation record (NTFS $Bitmap, exFAT's allocation
// bitmap, ext block bitmaps, a FAT) does not stop the volume mounting with every file intact, so a map read from
// it alone could be short. Seeded fuzz over real images made by mkfs: every damaged copy gives either a map that
// holds every byte the file system needs, or an every-block map with a warning, or — strict — a
// FilesystemDamagedError naming the volume. Never a trusted short map. "Needs" is judged against the intact map
// (plus, for FAT, what the damaged FAT chains to); a trusted map holding less (damage that orphaned clusters no
// file reaches any more) and a sample of the others are read back through the real driver, file for file, from a
// copy of only the mapped bytes. A second model damages any byte
// the map and its cross-check read (boot sectors, MFT, FATs, directories, inode tables); every trusted map that
// lost something the intact one held is read back through the real driver, and a couple of others.
// DISKLINE_FUZZ_ROUNDS sets the cases per file system (default 600; a quarter of it for the second model); the seed
// of a failure is in its message.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ByteRange } from '../device/types.ts';
import { withTestDisk } from '../testing/disk.ts';
import { readFilesystemChecksums, type TestFilesystem } from '../testing/filesystems.ts';
import { MiB, withTempDir } from '../testing/image.ts';
import { withLoop } from '../testing/loop.ts';
import { seededRandom } from '../testing/seeded-random.ts';
import { loopUnavailableReason, missingToolReason } from '../testing/tools.ts';
import { crc32c } from './crc32c.ts';
import { exfatGeometry } from './exfat.ts';
import { readDescriptors, readGeometry } from './ext.ts';
import { entryReader, fatGeometry } from './fat.ts';
import { usedMapOf } from './index.ts';
import { UsedMapMismatchError } from './map-check.ts';
import { ntfsGeometry, unnamedData } from './ntfs.ts';
import { flipBytesWithin, restoreBytes } from './testing/byte-flips.ts';
import { memoryVolume } from './testing/memory-volume.ts';
import { FilesystemDamagedError, type UsedMap } from './types.ts';
import { xfsGeometry } from './xfs.ts';

const rounds = Number(process.env.DISKLINE_FUZZ_ROUNDS) || 600;
/** Per file system, this many damaged copies whose map was trusted are read back through the real driver. */
const readBackSamples = 4;
/** Trusted maps smaller than the intact one are each read back; more than this many fails the test. */
const maxSuspicious = 20;

/** Where a file system keeps the record its used map is read from: byte ranges of the volume. */
interface AllocationRecord {
  regions: ByteRange[];
  /** FAT only: the first FAT (offset, bytes) and its entry decoder, to list the clusters a damaged FAT chains to. */
  fat?: { start: number; bytes: number; clusters: number };
  clusterBytes: number;
  dataStart: number;
}

async function allocationRecord(kind: TestFilesystem, bytes: Buffer): Promise<AllocationRecord> {
  const volume = memoryVolume(bytes, kind);
  if (kind === 'ntfs') {
    const geo = ntfsGeometry(bytes.subarray(0, 512))!;
    const { runs } = await unnamedData(volume, geo, 6, '$Bitmap');
    const clusterCount = Math.floor((geo.totalSectors * geo.bytesPerSector) / geo.clusterSize);
    return {
      regions: [{ start: runs[0]!.lcn! * geo.clusterSize, length: Math.ceil(clusterCount / 8) }],
      clusterBytes: geo.clusterSize,
      dataStart: 0,
    };
  }
  if (kind === 'exfat') {
    const geo = exfatGeometry(bytes.subarray(0, 512))!;
    const root = geo.clusterHeapOffset + (geo.rootCluster - 2) * geo.clusterSize;
    for (let at = root; at < root + geo.clusterSize; at += 32) {
      if (bytes[at] === 0x81) {
        const first = bytes.readUInt32LE(at + 20);
        return {
          regions: [
            {
              start: geo.clusterHeapOffset + (first - 2) * geo.clusterSize,
              length: Math.ceil(geo.clusterCount / 8),
            },
          ],
          clusterBytes: geo.clusterSize,
          dataStart: geo.clusterHeapOffset,
        };
      }
    }
    throw new Error('no exFAT allocation bitmap entry');
  }
  if (kind === 'fat16') {
    const geo = fatGeometry(bytes.subarray(0, 512))!;
    const fatBytes = (geo.clusterCount + 2) * 2;
    const copy = (n: number) => ({
      start: (geo.reservedSectors + n * geo.fatSectors) * geo.bytesPerSector + 4,
      length: fatBytes - 4,
    });
    return {
      regions: [copy(0), copy(1)],
      fat: {
        start: copy(0).start - 4,
        bytes: fatBytes,
        clusters: geo.clusterCount + 2,
      },
      clusterBytes: geo.sectorsPerCluster * geo.bytesPerSector,
      dataStart: geo.dataStartSector * geo.bytesPerSector,
    };
  }
  // ext4 without metadata_csum: its block bitmaps carry no checksum that would give the damage away.
  const geo = readGeometry(bytes.subarray(1024, 2048), volume);
  const descriptors = await readDescriptors(volume, geo, false);
  return {
    regions: descriptors
      .filter((d) => !(d.flags & 0x2))
      .map((d) => ({ start: d.blockBitmap * geo.blockSize, length: geo.clustersPerGroup / 8 })),
    clusterBytes: geo.blockSize,
    dataStart: 0,
  };
}

/** Bytes of `needed` that `ranges` (merged) leave out. */
function uncovered(needed: readonly ByteRange[], ranges: readonly ByteRange[]): number {
  let missing = 0;
  for (const n of needed) {
    let covered = 0;
    for (const r of ranges) {
      covered += Math.max(0, Math.min(n.start + n.length, r.start + r.length) - Math.max(n.start, r.start));
    }
    missing += n.length - covered;
  }
  return missing;
}

/**
 * One damage of the allocation record, chosen by `next`: a span of 1–32 bytes cleared (the bitmap-cleared case),
 * or 1–8 bytes set to random values. FAT: either copy, or the same span cleared in both (so only directory
 * entries still reference the clusters).
 */
function damage(record: AllocationRecord, bytes: Buffer, next: () => number): Map<number, number> {
  const saved = new Map<number, number>();
  const set = (at: number, value: number) => {
    if (!saved.has(at)) saved.set(at, bytes[at]!);
    bytes[at] = value;
  };
  const region = record.regions[Math.floor(next() * record.regions.length)]!;
  const mode = next();
  if (mode < 0.5) {
    const span = 1 + Math.floor(next() * 32);
    const offset = Math.floor(next() * Math.max(1, region.length - span));
    // FAT: sometimes the same entries cleared in both copies, so only directory entries still reference them.
    const targets = record.fat && mode < 0.15 ? record.regions : [region];
    for (const target of targets) {
      for (let at = offset; at < Math.min(offset + span, target.length); at++) set(target.start + at, 0);
    }
  } else {
    for (let i = 0, flips = 1 + Math.floor(next() * 8); i < flips; i++) {
      set(region.start + Math.floor(next() * region.length), Math.floor(next() * 256));
    }
  }
  return saved;
}

/** What a driver may read on the damaged copy: the intact map, plus (FAT) every cluster the damaged first FAT chains to. */
function neededBytes(record: AllocationRecord, bytes: Buffer, intact: UsedMap): ByteRange[] {
  const needed = intact.usedRanges.map((r) => ({ ...r }));
  if (record.fat) {
    const fat = bytes.subarray(record.fat.start, record.fat.start + record.fat.bytes);
    const entry = entryReader(fat, 'fat16');
    for (let cluster = 2; cluster < record.fat.clusters; cluster++) {
      const value = entry(cluster);
      if (value >= 2 && value < record.fat.clusters) {
        needed.push({
          start: record.dataStart + (value - 2) * record.clusterBytes,
          length: record.clusterBytes,
        });
      }
    }
  }
  return needed;
}

/** Files read through the real driver (via a loop device: exFAT's FUSE driver wants one); null when it cannot read them. */
async function filesOf(image: string, kind: TestFilesystem): Promise<Map<string, string> | null> {
  return withLoop(image, (loop) => readFilesystemChecksums(loop.device, kind), { readOnly: true }).catch(
    () => null,
  );
}

/**
 * Real outcome: a copy of only the mapped bytes reads back, file for file, like the damaged source. False when
 * the damaged source itself cannot be read (nothing to compare).
 */
async function assertCopyReadsBack(
  dir: string,
  kind: TestFilesystem,
  label: string,
  image: Buffer,
  map: UsedMap,
) {
  const source = join(dir, 'source.img');
  const copy = join(dir, 'copy.img');
  const copied = Buffer.alloc(image.length);
  for (const r of map.usedRanges) image.copy(copied, r.start, r.start, r.start + r.length);
  await writeFile(source, image);
  await writeFile(copy, copied);
  const expected = await filesOf(source, kind);
  if (!expected || expected.size === 0) return false;
  assert.deepEqual(
    await filesOf(copy, kind),
    expected,
    `${label}: a copy of only its map reads back differently`,
  );
  return true;
}

interface Case {
  kind: TestFilesystem;
  size: number;
  tools: string[];
  mkfsArgs?: string[];
}

const cases: Case[] = [
  { kind: 'ntfs', size: 16 * MiB, tools: ['mkfs.ntfs', 'ntfs-3g'] },
  { kind: 'fat16', size: 32 * MiB, tools: ['mkfs.vfat', 'mcopy'] },
  { kind: 'exfat', size: 16 * MiB, tools: ['mkfs.exfat', 'mount.exfat-fuse'] },
  { kind: 'ext4', size: 16 * MiB, tools: ['mkfs.ext4'], mkfsArgs: ['-O', '^metadata_csum,^uninit_bg'] },
];

/** The case's file system, made by mkfs on a disk with no table and filled with files, directories and deleted files. */
async function withFilledImage(c: Case, use: (bytes: Buffer) => Promise<void>): Promise<void> {
  await withTestDisk(
    {
      size: c.size,
      table: 'none',
      partitions: [
        {
          filesystem: c.kind,
          ...(c.mkfsArgs ? { mkfsArgs: c.mkfsArgs } : {}),
          fill: { files: 16, maxFileSize: 256 * 1024, directories: 3, deletedFiles: 6 },
        },
      ],
    },
    async (disk) => use(await readFile(disk.image)),
  );
}

/** A damaged copy whose map was trusted, kept to be read back through the real driver. */
type Sample = { seed: number; image: Buffer; map: UsedMap };

for (const c of cases) {
  test(`${c.kind}: ${rounds} damaged allocation records never give a trusted short map`, async (t) => {
    const skip = loopUnavailableReason() ?? missingToolReason(...c.tools);
    if (skip) return t.skip(skip);
    await withFilledImage(c, async (bytes) => {
      const intact = await usedMapOf(memoryVolume(bytes, 'intact'), { strict: true });
      assert.equal(intact.allBlocks, false);
      const record = await allocationRecord(c.kind, bytes);
      const counts = { refused: 0, wholeWithWarning: 0, trusted: 0, readBack: 0 };
      const readBack: Sample[] = [];
      const suspicious: Sample[] = [];
      for (let seed = 1; seed <= rounds; seed++) {
        const name = `${c.kind} seed ${seed}`;
        const saved = damage(record, bytes, seededRandom(seed * 7919 + c.kind.length));
        try {
          let strictError: Error | null = null;
          try {
            await usedMapOf(memoryVolume(bytes, name), { strict: true });
          } catch (error) {
            strictError = error as Error;
          }
          const map = await usedMapOf(memoryVolume(bytes, name));
          if (strictError) {
            assert.ok(strictError instanceof FilesystemDamagedError, `${name}: ${strictError.stack}`);
            assert.ok(strictError.message.startsWith(name), `${name}: the error names the volume`);
            assert.equal(map.allBlocks, true, `${name}: refused under strict, whole without it`);
            assert.ok(
              map.warnings.some((w) => w.startsWith(strictError.message)),
              `${name}: the warning says why`,
            );
            counts.refused++;
            continue;
          }
          if (map.allBlocks) {
            counts.wholeWithWarning++;
            continue;
          }
          counts.trusted++;
          const missing = uncovered(neededBytes(record, bytes, intact), map.usedRanges);
          if (missing > 0) {
            // Less than the intact map held: only safe if the damaged file system no longer uses those bytes
            // (a chain cut short orphans clusters no file reaches). The real driver decides, below.
            assert.ok(
              suspicious.length < maxSuspicious,
              `${name}: more than ${maxSuspicious} trusted maps leave out bytes the intact map held`,
            );
            suspicious.push({ seed, image: Buffer.from(bytes), map });
            continue;
          }
          const changed = JSON.stringify(map.usedRanges) !== JSON.stringify(intact.usedRanges);
          if (readBack.length < readBackSamples && (changed || readBack.length === 0)) {
            readBack.push({ seed, image: Buffer.from(bytes), map });
          }
        } finally {
          restoreBytes(bytes, saved);
        }
      }
      // Real outcome for a sample: a copy of only the mapped bytes reads back, file for file, like the damaged source.
      await withTempDir(async (dir) => {
        for (const sample of [...suspicious, ...readBack]) {
          const label = `${c.kind} seed ${sample.seed}`;
          assert.ok(
            await assertCopyReadsBack(dir, c.kind, label, sample.image, sample.map),
            `${label}: readable`,
          );
          counts.readBack++;
        }
      });
      t.diagnostic(
        `${c.kind}: ${counts.refused} refused under strict (copied whole with a warning otherwise), ` +
          `${counts.wholeWithWarning} copied whole, ${counts.trusted} trusted (${suspicious.length} of them ` +
          `smaller than the intact map), ${counts.readBack} read back file for file`,
      );
      assert.ok(counts.refused > 0, `${c.kind}: some damage was found`);
    });
  });
}

/** Cases per file system of damage anywhere its records are read; each suspicious trusted map is read back. */
const recordRounds = Math.ceil(rounds / 4);
const maxRecordReadBacks = 6;

for (const c of cases) {
  test(`${c.kind}: ${recordRounds} copies with damage anywhere in the records read give no trusted map that reads back short`, async (t) => {
    const skip = loopUnavailableReason() ?? missingToolReason(...c.tools);
    if (skip) return t.skip(skip);
    await withFilledImage(c, async (bytes) => {
      // What the map and its cross-check read on the intact file system: boot sectors, MFT, FATs, directories,
      // descriptors, bitmaps, inode tables, extent blocks. Damage lands there.
      const reads: ByteRange[] = [];
      const intact = await usedMapOf(memoryVolume(bytes, 'intact', reads), { strict: true });
      const suspicious: Sample[] = [];
      // Besides those, a couple of trusted maps that damage changed (else any trusted one) are read back too.
      const changed: Sample[] = [];
      let firstTrusted: Sample | undefined;
      const counts = { refused: 0, trusted: 0, readBack: 0, unreadableSource: 0 };
      for (let seed = 1; seed <= recordRounds; seed++) {
        const next = seededRandom(seed * 104729 + c.kind.length);
        const saved = flipBytesWithin(bytes, reads, next);
        const name = `${c.kind} record seed ${seed}`;
        try {
          const map = await usedMapOf(memoryVolume(bytes, name));
          if (map.allBlocks) {
            counts.refused++;
            continue;
          }
          counts.trusted++;
          // A trusted map that lost some of what the intact one held is the kind that could read back short.
          if (uncovered(intact.usedRanges, map.usedRanges) > 0) {
            suspicious.push({ seed, image: Buffer.from(bytes), map });
          } else if (JSON.stringify(map.usedRanges) !== JSON.stringify(intact.usedRanges)) {
            if (changed.length < 2) changed.push({ seed, image: Buffer.from(bytes), map });
          } else {
            firstTrusted ??= { seed, image: Buffer.from(bytes), map };
          }
        } finally {
          restoreBytes(bytes, saved);
        }
      }
      await withTempDir(async (dir) => {
        const others = changed.length > 0 ? changed : firstTrusted ? [firstTrusted] : [];
        for (const sample of [...suspicious.slice(0, maxRecordReadBacks), ...others]) {
          const label = `${c.kind} record seed ${sample.seed}`;
          if (await assertCopyReadsBack(dir, c.kind, label, sample.image, sample.map)) counts.readBack++;
          else counts.unreadableSource++;
        }
      });
      t.diagnostic(
        `${c.kind}: ${counts.refused} copied whole with a warning, ${counts.trusted} trusted, ` +
          `${suspicious.length} of them smaller than the intact map; ${counts.readBack} read back file for file, ` +
          `${counts.unreadableSource} whose damaged source the driver cannot read either`,
      );
    });
  });
}

test('a map short of a referenced extent is refused under strict with an error that says what references it', async () => {
  // Unit-level: the error type and wording, independent of any file system.
  const { crossCheckMap } = await import('./map-check.ts');
  const volume = memoryVolume(Buffer.alloc(1 << 20), 'volume 1');
  const map: UsedMap = {
    filesystem: 'ntfs',
    blockSize: 4096,
    usedRanges: [{ start: 0, length: 8192 }],
    allBlocks: false,
    warnings: [],
  };
  await assert.rejects(
    crossCheckMap(volume, map, {
      allocationRecord: '$Bitmap',
      repairTool: 'chkdsk',
      async run(_volume, _map, check) {
        check.reference(4096, 4096, () => 'inside');
        check.reference(8192, 8192, () => 'the $DATA of MFT record 70 ("a.bin")');
        check.reference(1 << 20, 4096, () => 'past the end');
      },
    }),
    (error: Error) => {
      assert.ok(error instanceof UsedMapMismatchError);
      assert.equal(
        error.message,
        'volume 1: $Bitmap of the ntfs file system leaves out 12 KiB that its own records use (first: bytes ' +
          '8192–16384, the $DATA of MFT record 70 ("a.bin")), so a copy of only the used blocks would lose them; ' +
          'its allocation records are damaged — run chkdsk on it',
      );
      return true;
    },
  );
});

test('FAT32 with mirroring off is mapped from its active FAT; the stale copy is neither used nor held against it', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('mkfs.vfat', 'mcopy');
  if (skip) return t.skip(skip);
  await withTestDisk(
    {
      size: 40 * MiB,
      table: 'none',
      partitions: [{ filesystem: 'fat32', fill: { files: 10, maxFileSize: 256 * 1024 } }],
    },
    async (disk) => {
      const bytes = await readFile(disk.image);
      const intact = await usedMapOf(memoryVolume(bytes, 'intact'), { strict: true });
      const geo = fatGeometry(bytes.subarray(0, 512))!;
      const copyAt = (n: number) => (geo.reservedSectors + n * geo.fatSectors) * geo.bytesPerSector;
      const fatBytes = geo.fatSectors * geo.bytesPerSector;
      // Make FAT 2 the active one and leave FAT 1 empty, as if it had been stale since mirroring was turned off.
      bytes.copy(bytes, copyAt(1), copyAt(0), copyAt(0) + fatBytes);
      bytes.fill(0, copyAt(0) + 8, copyAt(0) + fatBytes);
      bytes.writeUInt16LE(0x80 | 1, 40);
      const map = await usedMapOf(memoryVolume(bytes, 'mirroring off'), { strict: true });
      assert.deepEqual(map.usedRanges, intact.usedRanges);
      // With mirroring on again, the empty FAT 1 is what the file system would use: its map is refused.
      bytes.writeUInt16LE(0, 40);
      await assert.rejects(
        usedMapOf(memoryVolume(bytes, 'mirroring on'), { strict: true }),
        UsedMapMismatchError,
      );
    },
  );
});

test('XFS: a by-block free-space tree that frees used blocks, its checksum made valid, is caught by the by-size tree', async (t) => {
  const skip = loopUnavailableReason() ?? missingToolReason('mkfs.xfs');
  if (skip) return t.skip(skip);
  await withTestDisk(
    {
      size: 64 * MiB,
      table: 'none',
      partitions: [{ filesystem: 'xfs', fill: { files: 10, maxFileSize: 512 * 1024 } }],
    },
    async (disk) => {
      const bytes = await readFile(disk.image);
      const intact = await usedMapOf(memoryVolume(bytes, 'intact'), { strict: true });
      const geo = xfsGeometry(bytes.subarray(0, 512))!;
      // Allocation group 0's bnobt root is a leaf on a small file system: stretch its first free extent over the
      // used blocks after it, then re-seal the block's CRC so only the other records can tell.
      const agf = bytes.subarray(geo.sectorSize, 2 * geo.sectorSize);
      assert.equal(agf.readUInt32BE(28), 1, 'a one-level by-block tree');
      const leafAt = agf.readUInt32BE(16) * geo.blockSize;
      const leaf = bytes.subarray(leafAt, leafAt + geo.blockSize);
      leaf.writeUInt32BE(leaf.readUInt32BE(56 + 4) + 16, 56 + 4);
      leaf.writeUInt32LE(0, 52);
      leaf.writeUInt32LE(crc32c(leaf), 52);
      const lying = await usedMapOf(memoryVolume(bytes, 'lying'), { crossCheck: false, strict: true });
      assert.ok(uncovered(intact.usedRanges, lying.usedRanges) > 0, 'the lie makes the map short');
      await assert.rejects(
        usedMapOf(memoryVolume(bytes, 'lying'), { strict: true }),
        /free-space records disagree/,
      );
      const map = await usedMapOf(memoryVolume(bytes, 'lying'));
      assert.equal(map.allBlocks, true);
    },
  );
});
