// Where an ext2/3/4 inode's blocks are: its extent tree (ext4) or its direct and indirect block pointers
// (ext2/3), walked from the 60 bytes of i_block. Callers see the data runs and, separately, the tree's own
// blocks (extent index and leaf blocks, indirect blocks), which are allocated too.
import { FilesystemDamagedError, type Volume } from './types.ts';

const extentsFlag = 0x80000;
const extentMagic = 0xf30a;
/** Extent trees are at most 5 levels deep (the kernel's limit); a deeper one is damaged. */
const maxExtentDepth = 5;

/** A run of a file: `count` blocks from file block `logical` at volume block `physical`. */
export interface BlockRun {
  logical: number;
  physical: number;
  count: number;
}

export interface InodeBlockVisitor {
  /** `count` data blocks of the file from file block `logical` at volume block `physical`. */
  data(logical: number, physical: number, count: number): void;
  /** A block of the mapping itself (extent tree node, indirect block), about to be read. */
  tree?(physical: number): void;
}

/**
 * Each node's depth must be one less than its parent's, and no tree block may appear twice: a damaged tree that
 * points back into itself would otherwise be walked without end.
 */
async function walkExtents(
  volume: Volume,
  blockSize: number,
  node: Buffer,
  visit: InodeBlockVisitor,
  expectedDepth: number | null,
  seen: Set<number>,
  what: string,
): Promise<void> {
  const depth = node.length >= 12 ? node.readUInt16LE(6) : -1;
  if (
    depth < 0 ||
    node.readUInt16LE(0) !== extentMagic ||
    depth > maxExtentDepth ||
    (expectedDepth !== null && depth !== expectedDepth)
  ) {
    throw new FilesystemDamagedError(
      `${volume.name}: the extent tree of ${what} is damaged; run e2fsck on it`,
    );
  }
  const entries = node.readUInt16LE(2);
  for (let i = 0; i < entries; i++) {
    const at = 12 + i * 12;
    if (at + 12 > node.length) break;
    if (depth === 0) {
      const rawLength = node.readUInt16LE(at + 4);
      // Lengths above 32768 mark unwritten (preallocated) extents: still allocated.
      const length = rawLength > 32768 ? rawLength - 32768 : rawLength;
      const physical = node.readUInt16LE(at + 6) * 2 ** 32 + node.readUInt32LE(at + 8);
      visit.data(node.readUInt32LE(at), physical, length);
    } else {
      const child = node.readUInt32LE(at + 4) + node.readUInt16LE(at + 8) * 2 ** 32;
      if (seen.has(child)) {
        throw new FilesystemDamagedError(
          `${volume.name}: the extent tree of ${what} loops; run e2fsck on it`,
        );
      }
      seen.add(child);
      visit.tree?.(child);
      const childNode = await volume.read(child * blockSize, blockSize);
      await walkExtents(volume, blockSize, childNode, visit, depth - 1, seen, what);
    }
  }
}

async function walkIndirect(
  volume: Volume,
  blockSize: number,
  iBlock: Buffer,
  visit: InodeBlockVisitor,
  what: string,
) {
  const perBlock = blockSize / 4;
  const seen = new Set<number>();
  const walk = async (pointer: number, level: number, logical: number): Promise<void> => {
    if (pointer === 0) return;
    // An indirect block met twice means a damaged map that would be walked without end.
    if (seen.has(pointer)) {
      throw new FilesystemDamagedError(`${volume.name}: the block map of ${what} loops; run e2fsck on it`);
    }
    seen.add(pointer);
    visit.tree?.(pointer);
    const table = await volume.read(pointer * blockSize, blockSize);
    const span = perBlock ** (level - 1);
    for (let i = 0; i < perBlock; i++) {
      const child = table.readUInt32LE(i * 4);
      if (child === 0) continue;
      if (level === 1) visit.data(logical + i, child, 1);
      else await walk(child, level - 1, logical + i * span);
    }
  };
  for (let i = 0; i < 12; i++) {
    const pointer = iBlock.readUInt32LE(i * 4);
    if (pointer !== 0) visit.data(i, pointer, 1);
  }
  let logical = 12;
  for (let level = 1; level <= 3; level++) {
    await walk(iBlock.readUInt32LE((11 + level) * 4), level, logical);
    logical += perBlock ** level;
  }
}

/** Walks the blocks of `inode` (its raw bytes); `what` names it in errors ("inode 12"). */
export async function walkInodeBlocks(
  volume: Volume,
  blockSize: number,
  inode: Buffer,
  visit: InodeBlockVisitor,
  what: string,
): Promise<void> {
  const iBlock = inode.subarray(40, 100);
  if (inode.readUInt32LE(32) & extentsFlag)
    await walkExtents(volume, blockSize, iBlock, visit, null, new Set(), what);
  else await walkIndirect(volume, blockSize, iBlock, visit, what);
}

/** The data runs of `inode`, adjacent blocks merged. */
export async function inodeBlockRuns(
  volume: Volume,
  blockSize: number,
  inode: Buffer,
  what: string,
): Promise<BlockRun[]> {
  const runs: BlockRun[] = [];
  await walkInodeBlocks(
    volume,
    blockSize,
    inode,
    {
      data(logical, physical, count) {
        const last = runs[runs.length - 1];
        if (last && last.logical + last.count === logical && last.physical + last.count === physical)
          last.count += count;
        else runs.push({ logical, physical, count });
      },
    },
    what,
  );
  return runs;
}
