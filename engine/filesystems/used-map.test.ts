// Each reader's used map against the reference: partclone's domain log (the ranges it would copy) on real
// file systems made by mkfs and filled with files (some deleted again, so free space holds stale data).
import assert from 'node:assert/strict';
import { open, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { openReader } from '../device/open.ts';
import { invertRanges, mergeRanges, rangesBytes } from '../device/ranges.ts';
import type { ByteRange } from '../device/types.ts';
import { withTestDisk } from '../testing/disk.ts';
import { type FillOptions, makeFilesystem, type TestFilesystem } from '../testing/filesystems.ts';
import { MiB, makeSparseImage, withTempDir } from '../testing/image.ts';
import { partcloneUsedRanges } from '../testing/partclone.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';
import type { MapOptions } from './index.ts';
import { usedMapOfImage } from './testing/image-map.ts';
import type { UsedMap } from './types.ts';

const fill: FillOptions = { files: 16, maxFileSize: 512 * 1024, deletedFiles: 6 };

const mapOf = (image: string, options: MapOptions = {}): Promise<UsedMap> =>
  usedMapOfImage(image, options, `test volume ${image}`);

/** Builds a single-file-system image (no table), filled with files, and runs `body` on it. */
function withFilesystemImage(
  filesystem: TestFilesystem,
  size: number,
  mkfsArgs: string[],
  body: (image: string) => Promise<void>,
) {
  return withTestDisk({ size, table: 'none', partitions: [{ filesystem, mkfsArgs, fill }] }, (disk) =>
    body(disk.image),
  );
}

function skipFor(...tools: string[]): string | null {
  return loopUnavailableReason() ?? missingToolReason(...tools);
}

const extCases: { title: string; kind: TestFilesystem; args: string[] }[] = [
  { title: 'ext4 with defaults (flex_bg, metadata_csum, 64bit)', kind: 'ext4', args: [] },
  { title: 'ext4 with 4 KiB blocks and without 64bit', kind: 'ext4', args: ['-b', '4096', '-O', '^64bit'] },
  { title: 'ext4 without flex_bg or metadata_csum', kind: 'ext4', args: ['-O', '^flex_bg,^metadata_csum'] },
  { title: 'ext4 with meta_bg', kind: 'ext4', args: ['-O', 'meta_bg,^resize_inode'] },
  { title: 'ext4 with sparse_super2', kind: 'ext4', args: ['-O', 'sparse_super2'] },
  {
    title: 'ext4 with uninit_bg (gdt_csum) instead of metadata_csum',
    kind: 'ext4',
    args: ['-O', '^metadata_csum,uninit_bg'],
  },
  {
    title: 'ext4 with 2 KiB blocks and no resize inode',
    kind: 'ext4',
    args: ['-b', '2048', '-O', '^resize_inode'],
  },
  { title: 'ext3', kind: 'ext3', args: [] },
  { title: 'ext2', kind: 'ext2', args: [] },
];

for (const c of extCases) {
  test(`${c.title}: the used map equals partclone's range for range`, async (t) => {
    const skip = skipFor('mkfs.ext4', 'partclone.extfs');
    if (skip) return t.skip(skip);
    await withFilesystemImage(c.kind, 96 * MiB, c.args, async (image) => {
      const map = await mapOf(image);
      assert.equal(map.filesystem, c.kind);
      assert.equal(map.allBlocks, false);
      assert.deepEqual(map.warnings, []);
      assert.deepEqual(map.usedRanges, await partcloneUsedRanges(c.kind, image));
      assert.ok(rangesBytes(map.usedRanges) > 16 * 100 * 1024, 'the files are in the map');
    });
  });
}

test('ext4 with bigalloc: used clusters equal what the superblock counts as not free', async (t) => {
  const skip = skipFor('mkfs.ext4', 'dumpe2fs');
  if (skip) return t.skip(skip);
  await withFilesystemImage('ext4', 96 * MiB, ['-O', 'bigalloc', '-C', '16384'], async (image) => {
    const map = await mapOf(image);
    const { stdout } = await runTool('dumpe2fs', ['-h', image]);
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(stdout)![1]);
    assert.equal(map.blockSize, 16384);
    assert.equal(
      rangesBytes(map.usedRanges),
      (field('Block count') - field('Free blocks')) * field('Block size'),
    );
  });
});

for (const kind of ['fat16', 'fat32'] as const) {
  test(`${kind}: the used map equals partclone's and fsck.vfat's cluster count`, async (t) => {
    const skip = skipFor('mkfs.vfat', 'mcopy', 'fsck.vfat', 'partclone.fat');
    if (skip) return t.skip(skip);
    await withFilesystemImage(kind, kind === 'fat32' ? 64 * MiB : 32 * MiB, [], async (image) => {
      const map = await mapOf(image);
      assert.equal(map.filesystem, kind);
      assert.deepEqual(map.usedRanges, await partcloneUsedRanges(kind, image));
      await assertFatClusterCount(image, map);
    });
  });
}

test('fat12: the used map matches the clusters fsck.vfat counts (partclone 0.3 under-counts FAT12)', async (t) => {
  const skip = skipFor('mkfs.vfat', 'mcopy', 'fsck.vfat');
  if (skip) return t.skip(skip);
  await withFilesystemImage('fat12', 16 * MiB, [], async (image) => {
    const map = await mapOf(image);
    assert.equal(map.filesystem, 'fat12');
    await assertFatClusterCount(image, map);
  });
});

async function assertFatClusterCount(image: string, map: UsedMap) {
  const { stdout } = await runTool('fsck.vfat', ['-n', '-v', image]);
  const clusters = Number(/(\d+)\/\d+ clusters/.exec(stdout)![1]);
  const dataStart = Number(/Data area starts at byte (\d+)/.exec(stdout)![1]);
  assert.equal(rangesBytes(map.usedRanges), dataStart + clusters * map.blockSize);
}

test('ntfs: the used map equals partclone plus the backup boot sector after the last cluster', async (t) => {
  const skip = skipFor('mkfs.ntfs', 'ntfs-3g', 'partclone.ntfs');
  if (skip) return t.skip(skip);
  await withFilesystemImage('ntfs', 64 * MiB, [], async (image) => {
    const map = await mapOf(image);
    assert.equal(map.filesystem, 'ntfs');
    const reference = await partcloneUsedRanges('ntfs', image);
    const tailStart = Math.floor((64 * MiB - 512) / map.blockSize) * map.blockSize;
    assert.deepEqual(
      map.usedRanges,
      mergeRanges([...reference, { start: tailStart, length: 64 * MiB - tailStart }]),
    );
    assert.ok(rangesBytes(map.usedRanges) > 16 * 100 * 1024, 'the files are in the map');
  });
});

test('exfat: the used map equals partclone range for range', async (t) => {
  const skip = skipFor('mkfs.exfat', 'mount.exfat-fuse', 'partclone.exfat');
  if (skip) return t.skip(skip);
  await withFilesystemImage('exfat', 48 * MiB, [], async (image) => {
    const map = await mapOf(image);
    assert.equal(map.filesystem, 'exfat');
    assert.deepEqual(map.usedRanges, await partcloneUsedRanges('exfat', image));
    assert.ok(rangesBytes(map.usedRanges) > 16 * 100 * 1024, 'the files are in the map');
  });
});

test('xfs: the used map equals partclone range for range', async (t) => {
  const skip = skipFor('mkfs.xfs', 'partclone.xfs');
  if (skip) return t.skip(skip);
  await withFilesystemImage('xfs', 128 * MiB, [], async (image) => {
    const map = await mapOf(image);
    assert.equal(map.filesystem, 'xfs');
    assert.deepEqual(map.usedRanges, await partcloneUsedRanges('xfs', image));
  });
});

test('swap keeps only its header page', async (t) => {
  const skip = skipFor('mkswap');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 16 * MiB, table: 'none', partitions: [{ filesystem: 'swap' }] },
    async (disk) => {
      const map = await mapOf(disk.image);
      assert.equal(map.filesystem, 'swap');
      assert.deepEqual(map.usedRanges, [{ start: 0, length: 4096 }]);
    },
  );
});

test('random content is an unknown file system: every block, with a warning', async (t) => {
  const skip = skipFor('head');
  if (skip) return t.skip(skip);
  await withTestDisk({ size: 8 * MiB, table: 'none', partitions: [{ filesystem: null }] }, async (disk) => {
    const handle = await open(disk.image, 'r+');
    await handle.write(Buffer.alloc(4096, 0x5a), 0, 4096, 0);
    await handle.close();
    const map = await mapOf(disk.image);
    assert.equal(map.filesystem, 'unknown');
    assert.equal(map.allBlocks, true);
    assert.deepEqual(map.usedRanges, [{ start: 0, length: 8 * MiB }]);
    assert.match(map.warnings[0]!, /no known file system; every block is copied/);
  });
});

async function corrupt(image: string, offset: number, bytes: Buffer) {
  const handle = await open(image, 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, offset);
  } finally {
    await handle.close();
  }
}

test('a truncated ext4 image: every block with a warning, or with strict an error naming the volume', async (t) => {
  const skip = skipFor('mkfs.ext4');
  if (skip) return t.skip(skip);
  await withFilesystemImage('ext4', 64 * MiB, ['-b', '4096'], async (image) => {
    await truncate(image, 40 * MiB);
    const map = await mapOf(image);
    assert.equal(map.allBlocks, true);
    assert.deepEqual(map.usedRanges, [{ start: 0, length: 40 * MiB }]);
    assert.match(
      map.warnings[0]!,
      /the ext4 file system says it has 16384 blocks of 4096 bytes, more than the 41943040-byte partition holds/,
    );
    await assert.rejects(mapOf(image, { strict: true }), (error: Error) => {
      assert.equal(error.name, 'FilesystemDamagedError');
      assert.ok(error.message.startsWith(`test volume ${image}: the ext4 file system says`), error.message);
      return true;
    });
  });
});

test('an ext4 group descriptor pointing outside the file system is named in the error', async (t) => {
  const skip = skipFor('mkfs.ext4');
  if (skip) return t.skip(skip);
  await withFilesystemImage(
    'ext4',
    64 * MiB,
    ['-b', '4096', '-O', '^metadata_csum,^64bit'],
    async (image) => {
      // Group descriptor table at block 1; group 0's block bitmap field is its first 4 bytes.
      const bad = Buffer.alloc(4);
      bad.writeUInt32LE(0x7fffffff);
      await corrupt(image, 4096, bad);
      await assert.rejects(
        mapOf(image, { strict: true }),
        /the descriptor of block group 0 puts its block bitmap at block 2147483647, outside the 16384-block file system/,
      );
    },
  );
});

test('an NTFS $Bitmap record without its signature is an error, and every block without strict', async (t) => {
  const skip = skipFor('mkfs.ntfs');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 32 * MiB, table: 'none', partitions: [{ filesystem: 'ntfs' }] },
    async (disk) => {
      const reader = await openReader(disk.image);
      const boot = await reader.read(0, 512);
      await reader.close();
      const clusterSize = boot.readUInt16LE(11) * boot[13]!;
      const recordSize = 2 ** -boot.readInt8(64);
      const mft = Number(boot.readBigUInt64LE(48)) * clusterSize;
      await corrupt(disk.image, mft + 6 * recordSize, Buffer.from('JUNK'));
      await assert.rejects(
        mapOf(disk.image, { strict: true }),
        /the MFT record of \$Bitmap has no FILE signature; run chkdsk/,
      );
      const map = await mapOf(disk.image);
      assert.equal(map.allBlocks, true);
      assert.equal(map.filesystem, 'ntfs');
    },
  );
});

test('a damaged XFS AGF is an error naming the allocation group', async (t) => {
  const skip = skipFor('mkfs.xfs');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 128 * MiB, table: 'none', partitions: [{ filesystem: 'xfs' }] },
    async (disk) => {
      const reader = await openReader(disk.image);
      const sb = await reader.read(0, 512);
      await reader.close();
      const agBytes = sb.readUInt32BE(84) * sb.readUInt32BE(4);
      await corrupt(disk.image, agBytes + sb.readUInt16BE(102), Buffer.from('JUNK'));
      await assert.rejects(
        mapOf(disk.image, { strict: true }),
        /the AGF of allocation group 1 fails its checksum/,
      );
    },
  );
});

test('the used map never covers bytes the file system reports free', () => {
  // invertRanges is what XFS relies on: the gaps of a map and the map tile the volume exactly.
  const used: ByteRange[] = [
    { start: 0, length: 10 },
    { start: 20, length: 5 },
  ];
  assert.deepEqual(invertRanges(used, 30), [
    { start: 10, length: 10 },
    { start: 25, length: 5 },
  ]);
});

test('a FAT32 whose FAT spans several read pieces still maps a cluster near its end', async (t) => {
  const skip = missingToolReason('mkfs.vfat');
  if (skip) return t.skip(skip);
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, 'big-fat.img'), 600 * MiB);
    await makeFilesystem(image, 'fat32', ['-s', '1']);
    const reader = await openReader(image);
    const boot = await reader.read(0, 512);
    await reader.close();
    const reserved = boot.readUInt16LE(14);
    const fatSectors = boot.readUInt32LE(36);
    const dataStart = (reserved + 2 * fatSectors) * 512;
    // Mark cluster 1,100,000 (FAT byte 4.4 MB, past the first 3 MiB piece) as a one-cluster chain.
    const cluster = 1_100_000;
    const endOfChain = Buffer.alloc(4);
    endOfChain.writeUInt32LE(0x0fffffff);
    await corrupt(image, reserved * 512 + cluster * 4, endOfChain);
    const map = await mapOf(image, { strict: true });
    assert.deepEqual(map.usedRanges.at(-1), { start: dataStart + (cluster - 2) * 512, length: 512 });
  });
});

test('an NTFS whose $LogFile holds unwritten changes (Windows not shut down cleanly) is copied whole', async (t) => {
  const skip = skipFor('mkfs.ntfs');
  if (skip) return t.skip(skip);
  await withTestDisk(
    { size: 16 * MiB, table: 'none', partitions: [{ filesystem: 'ntfs' }] },
    async (disk) => {
      assert.equal((await mapOf(disk.image)).allBlocks, false, 'a fresh volume has an empty, clean log');
      const reader = await openReader(disk.image);
      const boot = await reader.read(0, 512);
      const clusterSize = boot.readUInt16LE(11) * boot[13]!;
      const recordSize = 2 ** -boot.readInt8(64);
      const record = await reader.read(
        Number(boot.readBigUInt64LE(48)) * clusterSize + 2 * recordSize,
        recordSize,
      );
      await reader.close();
      // $LogFile's first data run → its first cluster.
      let at = record.readUInt16LE(20);
      while (record.readUInt32LE(at) !== 0x80) at += record.readUInt32LE(at + 4);
      const runs = record.subarray(at + record.readUInt16LE(at + 32));
      const lengthBytes = runs[0]! & 0x0f;
      const logStart = runs.readIntLE(1 + lengthBytes, runs[0]! >> 4) * clusterSize;
      // A restart page as Windows leaves it while it has a client and the volume is not clean.
      const page = Buffer.alloc(4096);
      page.write('RSTR', 0, 'latin1');
      page.writeUInt16LE(0x1e, 4); // update sequence array offset
      page.writeUInt16LE(9, 6); // 1 + 8 strides
      page.writeUInt32LE(4096, 0x10);
      page.writeUInt32LE(4096, 0x14);
      page.writeUInt16LE(0x30, 0x18);
      page.writeUInt16LE(1, 0x30 + 8); // one log client
      page.writeUInt16LE(0xffff, 0x30 + 10);
      page.writeUInt16LE(0, 0x30 + 12); // client 0 in use
      page.writeUInt16LE(0, 0x30 + 14); // not clean
      page.writeUInt16LE(1, 0x1e);
      for (let stride = 1; stride <= 8; stride++) page.writeUInt16LE(1, stride * 512 - 2);
      await corrupt(disk.image, logStart, page);
      const map = await mapOf(disk.image, { strict: true });
      assert.equal(map.allBlocks, true);
      assert.match(map.warnings[0]!, /the NTFS journal \(\$LogFile\) holds changes not yet written home/);
    },
  );
});

for (const [name, offset, magic] of [
  ['crypto_LUKS', 0, 'LUKS\xba\xbe'],
  ['LVM2_member', 536, 'LVM2 001'],
  ['BitLocker', 3, '-FVE-FS-'],
] as const) {
  test(`${name} is named and copied whole, with a warning that says why`, async () => {
    await withTempDir(async (dir) => {
      const image = await makeSparseImage(join(dir, 'opaque.img'), 8 * MiB);
      await corrupt(image, offset, Buffer.from(magic, 'latin1'));
      const map = await mapOf(image, { strict: true });
      assert.equal(map.filesystem, name);
      assert.equal(map.allBlocks, true);
      assert.deepEqual(map.usedRanges, [{ start: 0, length: 8 * MiB }]);
      assert.match(
        map.warnings[0]!,
        /Diskline cannot see which blocks are used inside, so every block is copied/,
      );
    });
  });
}

test('a file system made over another one is recognised as the new one, not by a stale signature', async (t) => {
  const skip = missingToolReason(
    'mkfs.ext4',
    'mkfs.xfs',
    'mkfs.btrfs',
    'mkfs.ntfs',
    'mkfs.vfat',
    'mkfs.exfat',
  );
  if (skip) return t.skip(skip);
  const pairs: [TestFilesystem, TestFilesystem][] = [
    ['ext4', 'btrfs'],
    ['btrfs', 'ext4'],
    ['xfs', 'ext4'],
    ['ext4', 'xfs'],
    ['ntfs', 'fat32'],
    ['fat32', 'ntfs'],
    ['exfat', 'ext4'],
    ['btrfs', 'xfs'],
  ];
  await withTempDir(async (dir) => {
    for (const [old, fresh] of pairs) {
      const image = await makeSparseImage(join(dir, `${old}-then-${fresh}.img`), 256 * MiB);
      await makeFilesystem(image, old);
      await makeFilesystem(image, fresh);
      assert.equal((await mapOf(image, { strict: true })).filesystem, fresh, `${old} then ${fresh}`);
    }
  });
});
