// ext2/3/4 used blocks from the block-group bitmaps (clusters under bigalloc). Handles 32/64-bit group
// descriptors, flex_bg (bitmaps and inode tables outside their group), meta_bg descriptor placement,
// sparse_super/sparse_super2 backups, and BLOCK_UNINIT groups (whose bitmap is not on disk: their used
// blocks are computed from the layout, as e2fsprogs does). With metadata_csum the superblock, descriptors
// and bitmaps are checksum-verified; a journal that needs recovery is replayed in memory (ext-journal.ts).
import { forEachSetRun, mergeRanges } from '../device/ranges.ts';
import type { ByteRange } from '../device/types.ts';
import { crc32cUpdate } from './crc32c.ts';
import { inodeBlockRuns } from './ext-inode-blocks.ts';
import { journalCopies, replayedVolume } from './ext-journal.ts';
import { FilesystemDamagedError, type FilesystemReader, type UsedMap, type Volume } from './types.ts';

const superblockOffset = 1024;
const extMagic = 0xef53;

const compat = { hasJournal: 0x4, sparseSuper2: 0x200 };
export const incompat = {
  recover: 0x4,
  journalDev: 0x8,
  metaBg: 0x10,
  extents: 0x40,
  is64bit: 0x80,
  flexBg: 0x200,
  csumSeed: 0x2000,
};
export const roCompat = {
  sparseSuper: 0x1,
  hugeFile: 0x8,
  gdtCsum: 0x10,
  bigalloc: 0x200,
  metadataCsum: 0x400,
};
const blockUninit = 0x2;
/** Largest run of bitmap blocks read in one request. */
const maxBitmapRead = 4 * 1024 * 1024;

export interface ExtGeometry {
  blockSize: number;
  clusterRatio: number;
  blocksCount: number;
  firstDataBlock: number;
  blocksPerGroup: number;
  clustersPerGroup: number;
  groupCount: number;
  descSize: number;
  descPerBlock: number;
  inodeBlocksPerGroup: number;
  inodesPerGroup: number;
  inodeSize: number;
  journalInode: number;
  reservedGdtBlocks: number;
  firstMetaBg: number;
  compat: number;
  incompat: number;
  roCompat: number;
  backupGroups: [number, number];
  /** metadata_csum: the CRC32C seed of every checksum (from the UUID, or stored with csum_seed); else null. */
  csumSeed: number | null;
}

export interface GroupDesc {
  /** metadata_csum only: the stored checksum of the block bitmap (low 16 bits, high 16 when stored), or null. */
  bitmapCsum: { low: number; high: number | null } | null;
  blockBitmap: number;
  inodeBitmap: number;
  inodeTable: number;
  flags: number;
  /** Inodes at the end of the group's table never used (bg_itable_unused; meaningful with group checksums). */
  unusedInodes: number;
}

function isPowerOf(n: number, base: number): boolean {
  if (n < 1) return false;
  while (n % base === 0) n /= base;
  return n === 1;
}

function hasSuperBackup(geo: ExtGeometry, group: number): boolean {
  if (group === 0) return true;
  if (geo.compat & compat.sparseSuper2) return group === geo.backupGroups[0] || group === geo.backupGroups[1];
  if (group <= 1 || !(geo.roCompat & roCompat.sparseSuper)) return true;
  if (group % 2 === 0) return false;
  return isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
}

function groupFirstBlock(geo: ExtGeometry, group: number): number {
  return geo.firstDataBlock + group * geo.blocksPerGroup;
}

/** Where a group's superblock copy sits: its first block, except group 0 of a 1 KiB-block bigalloc file system. */
function superBlockOf(geo: ExtGeometry, group: number): number {
  const first = groupFirstBlock(geo, group);
  return first === 0 && geo.blockSize === 1024 ? 1 : first;
}

/** Blocks of superblock backups and descriptor tables a group holds (ext2fs_super_and_bgd_loc2). */
export function superAndDescriptorBlocks(geo: ExtGeometry, group: number): ByteRange[] {
  const first = superBlockOf(geo, group);
  const hasSuper = hasSuperBackup(geo, group);
  const blocks: ByteRange[] = [];
  const metaBg = Math.floor(group / geo.descPerBlock);
  const metaBgFeature = (geo.incompat & incompat.metaBg) !== 0;
  if (hasSuper) blocks.push({ start: first, length: 1 });
  if (!metaBgFeature || metaBg < geo.firstMetaBg) {
    if (hasSuper) {
      const oldDescBlocks = metaBgFeature
        ? geo.firstMetaBg
        : Math.ceil(geo.groupCount / geo.descPerBlock) + geo.reservedGdtBlocks;
      blocks.push({ start: first + 1, length: oldDescBlocks });
    }
  } else {
    const position = group % geo.descPerBlock;
    if (position === 0 || position === 1 || position === geo.descPerBlock - 1) {
      blocks.push({ start: first + (hasSuper ? 1 : 0), length: 1 });
    }
  }
  return blocks;
}

/** Block holding the descriptor of `group`. */
function descriptorBlock(geo: ExtGeometry, group: number): number {
  const metaBg = Math.floor(group / geo.descPerBlock);
  if (!(geo.incompat & incompat.metaBg) || metaBg < geo.firstMetaBg) return superBlockOf(geo, 0) + 1 + metaBg;
  const firstGroup = metaBg * geo.descPerBlock;
  return superBlockOf(geo, firstGroup) + (hasSuperBackup(geo, firstGroup) ? 1 : 0);
}

export function readGeometry(sb: Buffer, volume: Volume): ExtGeometry {
  const damaged = (what: string) =>
    new FilesystemDamagedError(`${volume.name}: the ext superblock is damaged (${what}); run e2fsck on it`);
  const logBlock = sb.readUInt32LE(24);
  if (logBlock > 6) throw damaged(`block size 2^${10 + logBlock}`);
  const blockSize = 1024 << logBlock;
  const featureCompat = sb.readUInt32LE(92);
  const featureIncompat = sb.readUInt32LE(96);
  const featureRoCompat = sb.readUInt32LE(100);
  const is64 = (featureIncompat & incompat.is64bit) !== 0;
  const blocksCount = sb.readUInt32LE(4) + (is64 ? sb.readUInt32LE(336) * 2 ** 32 : 0);
  const firstDataBlock = sb.readUInt32LE(20);
  const blocksPerGroup = sb.readUInt32LE(32);
  const bigalloc = (featureRoCompat & roCompat.bigalloc) !== 0;
  const logCluster = sb.readUInt32LE(28);
  const clusterRatio = bigalloc ? (1024 << logCluster) / blockSize : 1;
  const clustersPerGroup = bigalloc ? sb.readUInt32LE(36) : blocksPerGroup;
  const inodesPerGroup = sb.readUInt32LE(40);
  const revLevel = sb.readUInt32LE(76);
  const inodeSize = revLevel === 0 ? 128 : sb.readUInt16LE(88);
  const descSize = is64 ? sb.readUInt16LE(254) : 32;
  if (!Number.isInteger(clusterRatio) || clusterRatio < 1) throw damaged(`cluster size 2^${10 + logCluster}`);
  if (blocksPerGroup === 0 || blocksPerGroup > blockSize * 8 * clusterRatio) {
    throw damaged(`${blocksPerGroup} blocks per group`);
  }
  if (clustersPerGroup * clusterRatio !== blocksPerGroup)
    throw damaged('clusters and blocks per group disagree');
  if (descSize < 32 || descSize > blockSize || (is64 && descSize < 64))
    throw damaged(`descriptor size ${descSize}`);
  if (blocksCount <= firstDataBlock) throw damaged(`${blocksCount} blocks`);
  if (inodeSize < 128 || inodeSize > blockSize) throw damaged(`inode size ${inodeSize}`);
  return {
    blockSize,
    clusterRatio,
    blocksCount,
    firstDataBlock,
    blocksPerGroup,
    clustersPerGroup,
    groupCount: Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup),
    descSize,
    descPerBlock: blockSize / descSize,
    inodeBlocksPerGroup: Math.ceil((inodesPerGroup * inodeSize) / blockSize),
    inodesPerGroup,
    inodeSize,
    journalInode: sb.readUInt32LE(224),
    reservedGdtBlocks: sb.readUInt16LE(206),
    firstMetaBg: sb.readUInt32LE(260),
    compat: featureCompat,
    incompat: featureIncompat,
    roCompat: featureRoCompat,
    backupGroups: [sb.readUInt32LE(588), sb.readUInt32LE(592)],
    csumSeed:
      featureRoCompat & roCompat.metadataCsum
        ? featureIncompat & incompat.csumSeed
          ? sb.readUInt32LE(0x270)
          : crc32cUpdate(0xffffffff, sb.subarray(104, 120))
        : null,
  };
}

export async function readDescriptors(
  volume: Volume,
  geo: ExtGeometry,
  verify: boolean,
): Promise<GroupDesc[]> {
  const blocks = new Map<number, Buffer>();
  const descriptors: GroupDesc[] = [];
  // Descriptor blocks are contiguous except under meta_bg: read each run once.
  const wanted: number[] = [];
  for (let g = 0; g < geo.groupCount; g += geo.descPerBlock) wanted.push(descriptorBlock(geo, g));
  for (let i = 0; i < wanted.length; ) {
    let j = i + 1;
    while (j < wanted.length && wanted[j] === wanted[j - 1]! + 1 && (j - i) * geo.blockSize < maxBitmapRead)
      j++;
    const data = await volume.read(wanted[i]! * geo.blockSize, (j - i) * geo.blockSize);
    for (let k = i; k < j; k++)
      blocks.set(wanted[k]!, data.subarray((k - i) * geo.blockSize, (k - i + 1) * geo.blockSize));
    i = j;
  }
  const hi = (d: Buffer, at: number) => (geo.descSize >= 64 ? d.readUInt32LE(at) * 2 ** 32 : 0);
  for (let g = 0; g < geo.groupCount; g++) {
    const block = blocks.get(descriptorBlock(geo, g))!;
    const at = (g % geo.descPerBlock) * geo.descSize;
    const d = block.subarray(at, at + geo.descSize);
    if (verify && geo.csumSeed !== null) {
      const group = Buffer.alloc(4);
      group.writeUInt32LE(g);
      let crc = crc32cUpdate(geo.csumSeed, group);
      crc = crc32cUpdate(crc, d.subarray(0, 0x1e));
      crc = crc32cUpdate(crc, Buffer.alloc(2));
      crc = crc32cUpdate(crc, d.subarray(0x20));
      if ((crc & 0xffff) !== d.readUInt16LE(0x1e)) {
        throw new FilesystemDamagedError(
          `${volume.name}: the descriptor of block group ${g} fails its checksum; run e2fsck on it`,
        );
      }
    }
    const desc = {
      bitmapCsum:
        geo.csumSeed === null
          ? null
          : { low: d.readUInt16LE(0x18), high: geo.descSize >= 0x3c ? d.readUInt16LE(0x38) : null },
      blockBitmap: d.readUInt32LE(0) + hi(d, 32),
      inodeBitmap: d.readUInt32LE(4) + hi(d, 36),
      inodeTable: d.readUInt32LE(8) + hi(d, 40),
      flags: d.readUInt16LE(18),
      unusedInodes: d.readUInt16LE(0x1c) + (geo.descSize >= 64 ? d.readUInt16LE(0x32) * 0x10000 : 0),
    };
    for (const [what, at] of [
      ['block bitmap', desc.blockBitmap],
      ['inode bitmap', desc.inodeBitmap],
      ['inode table', desc.inodeTable],
    ] as const) {
      if (at < geo.firstDataBlock || at >= geo.blocksCount) {
        throw new FilesystemDamagedError(
          `${volume.name}: the descriptor of block group ${g} puts its ${what} at block ${at}, outside the ` +
            `${geo.blocksCount}-block file system; run e2fsck on it`,
        );
      }
    }
    descriptors.push(desc);
  }
  return descriptors;
}

/** Used bytes from the group descriptors and block bitmaps (sorted, merged; may run past the last block). */
async function bitmapUsedRanges(volume: Volume, geo: ExtGeometry, verify: boolean): Promise<ByteRange[]> {
  const descriptors = await readDescriptors(volume, geo, verify);
  const checksummed = (geo.roCompat & (roCompat.gdtCsum | roCompat.metadataCsum)) !== 0;
  const clusterBytes = geo.blockSize * geo.clusterRatio;
  const blockRanges: ByteRange[] = [];
  const used: ByteRange[] = [];
  // Block 0 of a 1 KiB-block file system lies before group 0: the boot block. Keep it.
  if (geo.firstDataBlock > 0) used.push({ start: 0, length: geo.firstDataBlock * geo.blockSize });
  const initialized: number[] = [];
  for (let g = 0; g < geo.groupCount; g++) {
    const desc = descriptors[g]!;
    if (checksummed && desc.flags & blockUninit && g > 0) {
      blockRanges.push(...superAndDescriptorBlocks(geo, g));
      blockRanges.push({ start: desc.blockBitmap, length: 1 }, { start: desc.inodeBitmap, length: 1 });
      blockRanges.push({ start: desc.inodeTable, length: geo.inodeBlocksPerGroup });
    } else {
      initialized.push(g);
    }
  }
  // Read bitmaps in runs of adjacent blocks (flex_bg packs them together).
  initialized.sort((a, b) => descriptors[a]!.blockBitmap - descriptors[b]!.blockBitmap);
  for (let i = 0; i < initialized.length; ) {
    let j = i + 1;
    const firstBlock = descriptors[initialized[i]!]!.blockBitmap;
    while (
      j < initialized.length &&
      descriptors[initialized[j]!]!.blockBitmap === firstBlock + (j - i) &&
      (j - i + 1) * geo.blockSize <= maxBitmapRead
    ) {
      j++;
    }
    const bitmaps = await volume.read(firstBlock * geo.blockSize, (j - i) * geo.blockSize);
    for (let k = i; k < j; k++) {
      const g = initialized[k]!;
      const bitmap = bitmaps.subarray((k - i) * geo.blockSize, (k - i + 1) * geo.blockSize);
      const stored = descriptors[g]!.bitmapCsum;
      if (verify && stored && geo.csumSeed !== null) {
        const crc = crc32cUpdate(geo.csumSeed, bitmap.subarray(0, geo.clustersPerGroup / 8));
        if ((crc & 0xffff) !== stored.low || (stored.high !== null && crc >>> 16 !== stored.high)) {
          throw new FilesystemDamagedError(
            `${volume.name}: the block bitmap of group ${g} fails its checksum; run e2fsck on it`,
          );
        }
      }
      const groupStartCluster = (groupFirstBlock(geo, g) - geo.firstDataBlock) / geo.clusterRatio;
      const totalClusters = Math.ceil((geo.blocksCount - geo.firstDataBlock) / geo.clusterRatio);
      const clustersHere = Math.min(geo.clustersPerGroup, totalClusters - groupStartCluster);
      forEachSetRun(bitmap, clustersHere, (first, count) => {
        used.push({
          start: geo.firstDataBlock * geo.blockSize + (groupStartCluster + first) * clusterBytes,
          length: count * clusterBytes,
        });
      });
    }
    i = j;
  }
  for (const r of blockRanges)
    used.push({ start: r.start * geo.blockSize, length: r.length * geo.blockSize });
  return mergeRanges(used);
}

/** The journal's committed, not yet checkpointed block copies (empty when it is clean). */
export async function committedJournalCopies(volume: Volume, geo: ExtGeometry) {
  if (geo.journalInode === 0) {
    throw new FilesystemDamagedError(
      `${volume.name} needs recovery from an external journal, which is not read`,
    );
  }
  const descriptors = await readDescriptors(volume, geo, false);
  const index = geo.journalInode - 1;
  const desc = descriptors[Math.floor(index / geo.inodesPerGroup)];
  if (!desc)
    throw new FilesystemDamagedError(`${volume.name}: the journal inode ${geo.journalInode} does not exist`);
  const inode = await volume.read(
    desc.inodeTable * geo.blockSize + (index % geo.inodesPerGroup) * geo.inodeSize,
    geo.inodeSize,
  );
  const runs = await inodeBlockRuns(volume, geo.blockSize, inode, 'the journal inode');
  return journalCopies(volume, geo.blockSize, runs);
}

export const extReader: FilesystemReader = {
  family: 'ext',

  async detect(volume) {
    if (volume.size < superblockOffset + 1024) return false;
    const sb = await volume.read(superblockOffset, 1024);
    return sb.readUInt16LE(56) === extMagic;
  },

  async usedMap(volume): Promise<UsedMap> {
    const sb = await volume.read(superblockOffset, 1024);
    const geo = readGeometry(sb, volume);
    const name =
      geo.incompat & (incompat.extents | incompat.is64bit | incompat.flexBg) ||
      geo.roCompat & roCompat.hugeFile
        ? 'ext4'
        : geo.compat & compat.hasJournal
          ? 'ext3'
          : 'ext2';
    const uuid = sb.subarray(104, 120).toString('hex');
    const label = sb.toString('latin1', 120, 136).replace(/\0.*$/s, '');
    const base = {
      filesystem: name,
      blockSize: geo.blockSize * geo.clusterRatio,
      uuid: `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`,
      ...(label ? { label } : {}),
    };
    const warnings: string[] = [];
    if (geo.incompat & incompat.journalDev) {
      return {
        ...base,
        usedRanges: [{ start: 0, length: volume.size }],
        allBlocks: true,
        warnings: [`${volume.name} is an external ext journal device; every block is copied`],
      };
    }
    if (geo.blocksCount * geo.blockSize > volume.size) {
      throw new FilesystemDamagedError(
        `${volume.name}: the ${name} file system says it has ${geo.blocksCount} blocks of ${geo.blockSize} bytes, more ` +
          `than the ${volume.size}-byte partition holds; the partition or image is truncated`,
      );
    }
    if (sb.readUInt16LE(58) & 0x2) {
      warnings.push(`${volume.name}: the ${name} file system is marked as having errors; run e2fsck on it`);
    }
    if (geo.csumSeed !== null && crc32cUpdate(0xffffffff, sb.subarray(0, 1020)) !== sb.readUInt32LE(1020)) {
      throw new FilesystemDamagedError(
        `${volume.name}: the ${name} superblock fails its checksum; run e2fsck on it`,
      );
    }
    const recovering = (geo.incompat & incompat.recover) !== 0;
    // Before a replay, bitmaps and descriptors may be at different ages: their checksums are checked after it.
    let used = await bitmapUsedRanges(volume, geo, !recovering);
    if (geo.incompat & incompat.recover) {
      // The journal holds committed metadata (bitmaps among it) not yet written home: the used map is the union
      // of the blocks used before and after its replay, so the copy is whole whether or not it gets replayed.
      try {
        const copies = await committedJournalCopies(volume, geo);
        if (copies.size) {
          const replayed = await bitmapUsedRanges(replayedVolume(volume, geo.blockSize, copies), geo, false);
          used = mergeRanges([...used, ...replayed]);
        }
      } catch (error) {
        if (!(error instanceof FilesystemDamagedError)) throw error;
        return {
          ...base,
          usedRanges: [{ start: 0, length: volume.size }],
          allBlocks: true,
          warnings: [
            `${error.message}; its bitmaps may be stale, so every block is copied. Freeze or unmount the file ` +
              'system for a used-blocks-only backup',
          ],
        };
      }
    }
    const fsEnd = geo.blocksCount * geo.blockSize;
    const usedRanges = used.filter((r) => r.start < fsEnd).map((r) => ({ ...r }));
    const last = usedRanges[usedRanges.length - 1];
    if (last && last.start + last.length > fsEnd) last.length = fsEnd - last.start;
    return { ...base, usedRanges, allBlocks: false, warnings };
  },
};
