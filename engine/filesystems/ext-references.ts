// What an ext2/3/4 file system's records reference: each group's superblock and descriptor copies, bitmaps and
// inode table, and for every inode in use (in the initialized part of each
// group's inode table), its extended-attribute block and the blocks of its extent tree or indirect block map —
// data and the mapping's own blocks. The used map from the block bitmaps must cover them all. A journal that
// needs recovery is read through its replay, as the map is.
import {
  committedJournalCopies,
  type ExtGeometry,
  incompat,
  readDescriptors,
  readGeometry,
  roCompat,
  superAndDescriptorBlocks,
} from './ext.ts';
import { walkInodeBlocks } from './ext-inode-blocks.ts';
import { replayedVolume } from './ext-journal.ts';
import type { MapCrossCheck, ReferenceCheck } from './map-check.ts';
import type { Volume } from './types.ts';

const inodeUninit = 0x1;
const inlineDataFlag = 0x10000000;
const extentsFlag = 0x80000;
const modeType = { mask: 0xf000, regular: 0x8000, directory: 0x4000, symlink: 0xa000 };
/** Inode tables are read in pieces of at most this many bytes. */
const maxTableRead = 4 * 1024 * 1024;

/** References the blocks one in-use inode uses. */
async function referenceInode(
  volume: Volume,
  geo: ExtGeometry,
  inode: Buffer,
  number: number,
  check: ReferenceCheck,
): Promise<void> {
  const blockSize = geo.blockSize;
  const what = `inode ${number}`;
  const fileAcl =
    inode.readUInt32LE(104) + (geo.incompat & incompat.is64bit ? inode.readUInt16LE(118) * 2 ** 32 : 0);
  if (fileAcl) check.reference(fileAcl * blockSize, blockSize, () => `the extended attributes of ${what}`);
  const type = inode.readUInt16LE(0) & modeType.mask;
  if (type !== modeType.regular && type !== modeType.directory && type !== modeType.symlink) return;
  const flags = inode.readUInt32LE(32);
  if (flags & inlineDataFlag) return;
  // A fast symlink keeps its target in i_block itself.
  if (type === modeType.symlink && !(flags & extentsFlag) && inode.readUInt32LE(4) < 60) return;
  // Adjacent data blocks are handed over as one run.
  let runStart = -1;
  let runBlocks = 0;
  const flush = () => {
    if (runBlocks > 0) {
      check.reference(runStart * blockSize, runBlocks * blockSize, () => `the data of ${what}`);
    }
    runBlocks = 0;
  };
  await walkInodeBlocks(
    volume,
    blockSize,
    inode,
    {
      data(_logical, physical, count) {
        if (runBlocks > 0 && physical === runStart + runBlocks) {
          runBlocks += count;
          return;
        }
        flush();
        runStart = physical;
        runBlocks = count;
      },
      tree(physical) {
        check.reference(physical * blockSize, blockSize, () => `the block map of ${what}`);
      },
    },
    what,
  );
  flush();
}

export const extCrossCheck: MapCrossCheck = {
  allocationRecord: 'the block bitmaps',
  repairTool: 'e2fsck',

  async run(volume, _map, check) {
    const geo = readGeometry(await volume.read(1024, 1024), volume);
    let view = volume;
    if (geo.incompat & incompat.recover) {
      const copies = await committedJournalCopies(volume, geo);
      if (copies.size) view = replayedVolume(volume, geo.blockSize, copies);
    }
    const descriptors = await readDescriptors(view, geo, false);
    const checksummed = (geo.roCompat & (roCompat.gdtCsum | roCompat.metadataCsum)) !== 0;
    const inodesPerRead = Math.max(1, Math.floor(maxTableRead / geo.inodeSize));
    const blockSize = geo.blockSize;
    for (const [group, desc] of descriptors.entries()) {
      for (const blocks of superAndDescriptorBlocks(geo, group)) {
        check.reference(
          blocks.start * blockSize,
          blocks.length * blockSize,
          () => `the superblock and descriptor copies of group ${group}`,
        );
      }
      check.reference(desc.blockBitmap * blockSize, blockSize, () => `the block bitmap of group ${group}`);
      check.reference(desc.inodeBitmap * blockSize, blockSize, () => `the inode bitmap of group ${group}`);
      check.reference(
        desc.inodeTable * blockSize,
        geo.inodeBlocksPerGroup * blockSize,
        () => `the inode table of group ${group}`,
      );
    }
    for (const [group, desc] of descriptors.entries()) {
      if (checksummed && desc.flags & inodeUninit) continue;
      const inodes = checksummed ? Math.max(0, geo.inodesPerGroup - desc.unusedInodes) : geo.inodesPerGroup;
      for (let first = 0; first < inodes; first += inodesPerRead) {
        const count = Math.min(inodesPerRead, inodes - first);
        const table = await view.read(
          desc.inodeTable * geo.blockSize + first * geo.inodeSize,
          count * geo.inodeSize,
        );
        for (let i = 0; i < count; i++) {
          const inode = table.subarray(i * geo.inodeSize, (i + 1) * geo.inodeSize);
          // Mode 0 or no links: free, or deleted (its blocks went back to the bitmaps).
          if (inode.readUInt16LE(0) === 0 || inode.readUInt16LE(26) === 0) continue;
          await referenceInode(view, geo, inode, group * geo.inodesPerGroup + first + i + 1, check);
        }
      }
    }
  },
};
