// XFS used blocks: per allocation group, everything except the extents of the by-block free-space B+tree
// (bnobt) rooted in the AGF, and the blocks on the AG free list (AGFL). The internal log counts as used. Handles v4 and v5 (CRC)
// block headers. The trees are trusted only when the log is clean (unmounted or frozen); otherwise every block is copied.

import { invertRanges, mergeRanges } from '../device/ranges.ts';
import type { ByteRange } from '../device/types.ts';
import { crc32c } from './crc32c.ts';
import {
  allBlocksMap,
  FilesystemDamagedError,
  type FilesystemReader,
  type UsedMap,
  type Volume,
} from './types.ts';
import { assertCleanLog, internalLog } from './xfs-log.ts';

const nullBlock = 0xffffffff;
/** Magics of the by-block (bnobt) and by-size (cntbt) free-space B+tree blocks, v4 and v5. */
export const bnoMagics = new Set(['ABTB', 'AB3B']);
export const cntMagics = new Set(['ABTC', 'AB3C']);
/** Deeper trees than this mean a loop in damaged metadata (real ones have 1–5 levels). */
const maxLevels = 10;

export interface XfsGeometry {
  blockSize: number;
  dataBlocks: number;
  agBlocks: number;
  agCount: number;
  sectorSize: number;
  v5: boolean;
  uuid: string;
  label: string;
}

export function xfsGeometry(sb: Buffer): XfsGeometry | null {
  if (sb.length < 512 || sb.toString('latin1', 0, 4) !== 'XFSB') return null;
  const uuidHex = sb.subarray(32, 48).toString('hex');
  return {
    blockSize: sb.readUInt32BE(4),
    dataBlocks: Number(sb.readBigUInt64BE(8)),
    agBlocks: sb.readUInt32BE(84),
    agCount: sb.readUInt32BE(88),
    sectorSize: sb.readUInt16BE(102),
    v5: (sb.readUInt16BE(100) & 0xf) === 5,
    uuid: `${uuidHex.slice(0, 8)}-${uuidHex.slice(8, 12)}-${uuidHex.slice(12, 16)}-${uuidHex.slice(16, 20)}-${uuidHex.slice(20)}`,
    label: sb.toString('latin1', 108, 120).replace(/\0.*$/s, ''),
  };
}

/** v5 metadata: CRC32C of the buffer with its own checksum field (little-endian, at `at`) taken as zero. */
function crcMatches(buffer: Buffer, at: number): boolean {
  const copy = Buffer.from(buffer);
  copy.writeUInt32LE(0, at);
  return crc32c(copy) === buffer.readUInt32LE(at);
}

/**
 * Free extents of one AG (AG-relative block numbers), walking a free-space tree's leaves left to right: the bnobt
 * (the default), or with `magics` = cntMagics the cntbt, which lists the same extents by size.
 */
export async function freeExtents(
  volume: Volume,
  geo: XfsGeometry,
  ag: number,
  root: number,
  levels: number,
  magics: ReadonlySet<string> = bnoMagics,
) {
  const damaged = (what: string) =>
    new FilesystemDamagedError(`${volume.name}: allocation group ${ag}: ${what}; run xfs_repair on it`);
  const headerSize = geo.v5 ? 56 : 16;
  const agStart = ag * geo.agBlocks * geo.blockSize;
  const readBlock = async (agBlock: number) => {
    if (agBlock >= geo.agBlocks)
      throw damaged(`free-space tree points at block ${agBlock}, outside the group`);
    const block = await volume.read(agStart + agBlock * geo.blockSize, geo.blockSize);
    if (geo.v5 && !crcMatches(block, 52))
      throw damaged(`free-space tree block ${agBlock} fails its checksum`);
    if (!magics.has(block.toString('latin1', 0, 4)))
      throw damaged(`free-space tree block ${agBlock} has no magic`);
    return block;
  };
  if (levels < 1 || levels > maxLevels) throw damaged(`free-space tree has ${levels} levels`);
  let block = await readBlock(root);
  for (let level = levels - 1; level > 0; level--) {
    if (block.readUInt16BE(4) !== level) throw damaged(`free-space tree node is at the wrong level`);
    const maxRecs = Math.floor((geo.blockSize - headerSize) / 12);
    block = await readBlock(block.readUInt32BE(headerSize + maxRecs * 8));
  }
  const extents: ByteRange[] = [];
  const seen = new Set<number>();
  while (true) {
    if (block.readUInt16BE(4) !== 0) throw damaged('free-space tree leaf is not at level 0');
    const records = block.readUInt16BE(6);
    if (headerSize + records * 8 > geo.blockSize) throw damaged(`free-space leaf claims ${records} records`);
    for (let i = 0; i < records; i++) {
      const at = headerSize + i * 8;
      extents.push({ start: block.readUInt32BE(at), length: block.readUInt32BE(at + 4) });
    }
    const right = block.readUInt32BE(12);
    if (right === nullBlock) break;
    if (seen.has(right)) throw damaged('free-space tree leaves form a loop');
    seen.add(right);
    block = await readBlock(right);
  }
  return extents;
}

/** Blocks on the AG free list (reserved for tree growth; their content is meaningless), as 1-block extents. */
async function freeListBlocks(
  volume: Volume,
  geo: XfsGeometry,
  ag: number,
  agf: Buffer,
): Promise<ByteRange[]> {
  const first = agf.readUInt32BE(40);
  const count = agf.readUInt32BE(48);
  if (count === 0) return [];
  const agfl = await volume.read(ag * geo.agBlocks * geo.blockSize + 3 * geo.sectorSize, geo.sectorSize);
  if (geo.v5 && !crcMatches(agfl, 32)) {
    throw new FilesystemDamagedError(`${volume.name}: the AGFL of allocation group ${ag} fails its checksum`);
  }
  const headerSize = geo.v5 ? 36 : 0;
  if (geo.v5 && agfl.toString('latin1', 0, 4) !== 'XAFL') {
    throw new FilesystemDamagedError(
      `${volume.name}: the AGFL of allocation group ${ag} is damaged; run xfs_repair`,
    );
  }
  const slots = Math.floor((geo.sectorSize - headerSize) / 4);
  if (first >= slots || count > slots) {
    throw new FilesystemDamagedError(`${volume.name}: the free list of allocation group ${ag} is damaged`);
  }
  const blocks: ByteRange[] = [];
  for (let i = 0; i < count; i++) {
    const block = agfl.readUInt32BE(headerSize + ((first + i) % slots) * 4);
    if (block < geo.agBlocks) blocks.push({ start: block, length: 1 });
  }
  return blocks;
}

export const xfsReader: FilesystemReader = {
  family: 'xfs',

  async detect(volume) {
    if (volume.size < 512) return false;
    return xfsGeometry(await volume.read(0, 512)) !== null;
  },

  async usedMap(volume: Volume): Promise<UsedMap> {
    const sb = await volume.read(0, 512);
    const geo = xfsGeometry(sb);
    if (!geo) throw new FilesystemDamagedError(`${volume.name}: the XFS superblock is not valid`);
    const { blockSize, agBlocks } = geo;
    if (geo.v5 && geo.sectorSize >= 512 && geo.sectorSize <= 4096) {
      const sector = sb.length >= geo.sectorSize ? sb : await volume.read(0, geo.sectorSize);
      if (!crcMatches(sector.subarray(0, geo.sectorSize), 224)) {
        throw new FilesystemDamagedError(
          `${volume.name}: the XFS superblock fails its checksum; run xfs_repair on it`,
        );
      }
    }
    if (blockSize < 512 || blockSize > 65536 || agBlocks === 0 || geo.agCount === 0 || geo.sectorSize < 512) {
      throw new FilesystemDamagedError(`${volume.name}: the XFS superblock is damaged; run xfs_repair on it`);
    }
    if (geo.dataBlocks * blockSize > volume.size) {
      throw new FilesystemDamagedError(
        `${volume.name}: the XFS file system says it has ${geo.dataBlocks} blocks of ${blockSize} bytes, more than ` +
          `the ${volume.size}-byte partition holds; the partition or image is truncated`,
      );
    }
    const log = internalLog(sb);
    if (!log) {
      return allBlocksMap(
        'xfs',
        volume,
        blockSize,
        `${volume.name}: XFS with an external log is not mapped; every block is copied`,
      );
    }
    try {
      await assertCleanLog(volume, log);
    } catch (error) {
      if (!(error instanceof FilesystemDamagedError)) throw error;
      return allBlocksMap(
        'xfs',
        volume,
        blockSize,
        `${error.message}, so every block is copied. Freeze or unmount it for a used-blocks-only backup`,
      );
    }
    const used: ByteRange[] = [];
    for (let ag = 0; ag < geo.agCount; ag++) {
      const agStart = ag * agBlocks * blockSize;
      const agf = await volume.read(agStart + geo.sectorSize, geo.sectorSize);
      if (geo.v5 && !crcMatches(agf, 216)) {
        throw new FilesystemDamagedError(
          `${volume.name}: the AGF of allocation group ${ag} fails its checksum; run xfs_repair on it`,
        );
      }
      if (agf.toString('latin1', 0, 4) !== 'XAGF' || agf.readUInt32BE(8) !== ag) {
        throw new FilesystemDamagedError(
          `${volume.name}: the AGF of allocation group ${ag} is damaged; run xfs_repair on it`,
        );
      }
      const agLength = Math.min(agf.readUInt32BE(12), agBlocks, geo.dataBlocks - ag * agBlocks);
      const free = await freeExtents(volume, geo, ag, agf.readUInt32BE(16), agf.readUInt32BE(28));
      for (const block of await freeListBlocks(volume, geo, ag, agf)) free.push(block);
      const freeBytes = mergeRanges(
        free.map((e) => ({ start: e.start * blockSize, length: e.length * blockSize })),
      );
      for (const r of invertRanges(freeBytes, agLength * blockSize)) {
        used.push({ start: agStart + r.start, length: r.length });
      }
    }
    return {
      filesystem: 'xfs',
      blockSize,
      usedRanges: mergeRanges(used),
      allBlocks: false,
      uuid: geo.uuid,
      ...(geo.label ? { label: geo.label } : {}),
      warnings: [],
    };
  },
};
