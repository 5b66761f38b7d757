// btrfs (single device, SINGLE/DUP profiles): the chunk tree (bootstrapped from the superblock's system
// chunk array) maps logical to physical addresses; the extent tree lists every allocated extent (data and
// tree blocks). Used = those extents on this device, plus the superblock copies and the first MiB.
// Multi-device file systems, pending log trees and unknown trees fall back to every block with a warning.
import { mergeRanges } from '../device/ranges.ts';
import type { ByteRange } from '../device/types.ts';
import { crc32c } from './crc32c.ts';
import {
  allBlocksMap,
  FilesystemDamagedError,
  type FilesystemReader,
  type UsedMap,
  type Volume,
} from './types.ts';

const superblockOffset = 65536;
const superblockMirrors = [65536, 64 * 1024 * 1024, 256 * 1024 * 1024 * 1024];
const headerSize = 101;
const leafItemSize = 25;
const keyPtrSize = 33;
const maxTreeLevel = 8;
const key = { chunkItem: 228, rootItem: 132, extentItem: 168, metadataItem: 169 };
const extentTreeId = 2n;
/** incompat flags: extent tree v2 changes the extent tree's meaning. */
const incompatExtentTreeV2 = 1n << 13n;

interface Stripe {
  devid: bigint;
  offset: number;
}

interface Chunk {
  logical: number;
  length: number;
  stripes: Stripe[];
  type: bigint;
}

interface BtrfsSuper {
  fsid: Buffer;
  rootTree: number;
  chunkTree: number;
  logTree: number;
  totalBytes: number;
  numDevices: number;
  sectorSize: number;
  nodeSize: number;
  incompat: bigint;
  devid: bigint;
  deviceBytes: number;
  sysChunkArray: Buffer;
  label: string;
  /** CRC32C checksums (csum type 0); other types (xxhash, sha256, blake2) are not verified. */
  checksummed: boolean;
}

function parseSuper(sb: Buffer): BtrfsSuper {
  const arraySize = sb.readUInt32LE(0xa0);
  return {
    fsid: sb.subarray(0x20, 0x30),
    rootTree: Number(sb.readBigUInt64LE(0x50)),
    chunkTree: Number(sb.readBigUInt64LE(0x58)),
    logTree: Number(sb.readBigUInt64LE(0x60)),
    totalBytes: Number(sb.readBigUInt64LE(0x70)),
    numDevices: Number(sb.readBigUInt64LE(0x88)),
    sectorSize: sb.readUInt32LE(0x90),
    nodeSize: sb.readUInt32LE(0x94),
    incompat: sb.readBigUInt64LE(0xbc),
    devid: sb.readBigUInt64LE(0xc9),
    deviceBytes: Number(sb.readBigUInt64LE(0xc9 + 8)),
    sysChunkArray: sb.subarray(0x32b, 0x32b + Math.min(arraySize, 2048)),
    label: sb.toString('utf8', 0x12b, 0x12b + 256).replace(/\0.*$/s, ''),
    checksummed: sb.readUInt16LE(0xc4) === 0,
  };
}

function parseChunk(logical: number, item: Buffer): Chunk {
  const stripeCount = item.readUInt16LE(44);
  const stripes: Stripe[] = [];
  for (let i = 0; i < stripeCount; i++) {
    const at = 48 + i * 32;
    stripes.push({ devid: item.readBigUInt64LE(at), offset: Number(item.readBigUInt64LE(at + 8)) });
  }
  return { logical, length: Number(item.readBigUInt64LE(0)), stripes, type: item.readBigUInt64LE(24) };
}

/** Chunk types that spread one logical range over several stripes (RAID0/1/10/5/6, RAID1C3/4). */
const stripedProfiles =
  (1n << 3n) | (1n << 4n) | (1n << 6n) | (1n << 7n) | (1n << 8n) | (1n << 9n) | (1n << 10n);

class BtrfsMap {
  readonly chunks: Chunk[] = [];
  private readonly volume: Volume;
  private readonly sb: BtrfsSuper;

  constructor(volume: Volume, sb: BtrfsSuper) {
    this.volume = volume;
    this.sb = sb;
  }

  damaged(what: string): FilesystemDamagedError {
    return new FilesystemDamagedError(`${this.volume.name}: btrfs ${what}; run btrfs check on it`);
  }

  addChunk(chunk: Chunk): void {
    if (chunk.type & stripedProfiles) throw this.damaged('uses a striped or mirrored profile across devices');
    if (!this.chunks.some((c) => c.logical === chunk.logical)) this.chunks.push(chunk);
  }

  /** Physical ranges on this device of the logical range (both copies for DUP). */
  physical(logical: number, length: number): ByteRange[] {
    const ranges: ByteRange[] = [];
    let at = logical;
    const end = logical + length;
    while (at < end) {
      const chunk = this.chunks.find((c) => at >= c.logical && at < c.logical + c.length);
      if (!chunk) throw this.damaged(`has no chunk for logical address ${at}`);
      const upTo = Math.min(end, chunk.logical + chunk.length);
      for (const stripe of chunk.stripes) {
        if (stripe.devid !== this.sb.devid) continue;
        ranges.push({ start: stripe.offset + (at - chunk.logical), length: upTo - at });
      }
      at = upTo;
    }
    return ranges;
  }

  async readNode(logical: number): Promise<Buffer> {
    const where = this.physical(logical, this.sb.nodeSize)[0];
    if (!where) throw this.damaged(`tree block ${logical} is not on this device`);
    const node = await this.volume.read(where.start, this.sb.nodeSize);
    if (this.sb.checksummed && crc32c(node.subarray(0x20)) !== node.readUInt32LE(0)) {
      throw this.damaged(`tree block at logical ${logical} fails its checksum`);
    }
    if (Number(node.readBigUInt64LE(0x30)) !== logical || !node.subarray(0x20, 0x30).equals(this.sb.fsid)) {
      throw this.damaged(`tree block at logical ${logical} is not the block it should be`);
    }
    return node;
  }

  /** Calls `onItem(type, objectid, offset, data)` for every leaf item of the tree rooted at `root`. */
  async walk(
    root: number,
    onItem: (type: number, objectid: bigint, offset: bigint, data: Buffer) => void,
    onNode?: (logical: number) => void,
    depth = 0,
  ): Promise<void> {
    if (depth > maxTreeLevel) throw this.damaged('tree is deeper than any valid one');
    const node = await this.readNode(root);
    onNode?.(root);
    const count = node.readUInt32LE(0x60);
    const level = node[0x64]!;
    if (level === 0) {
      if (headerSize + count * leafItemSize > node.length)
        throw this.damaged(`leaf ${root} claims ${count} items`);
      for (let i = 0; i < count; i++) {
        const at = headerSize + i * leafItemSize;
        const dataOffset = headerSize + node.readUInt32LE(at + 17);
        const dataSize = node.readUInt32LE(at + 21);
        if (dataOffset + dataSize > node.length) throw this.damaged(`leaf ${root} has an item outside it`);
        onItem(
          node[at + 8]!,
          node.readBigUInt64LE(at),
          node.readBigUInt64LE(at + 9),
          node.subarray(dataOffset, dataOffset + dataSize),
        );
      }
      return;
    }
    if (headerSize + count * keyPtrSize > node.length)
      throw this.damaged(`node ${root} claims ${count} children`);
    for (let i = 0; i < count; i++) {
      const at = headerSize + i * keyPtrSize;
      await this.walk(Number(node.readBigUInt64LE(at + 17)), onItem, onNode, depth + 1);
    }
  }
}

async function btrfsUsed(volume: Volume, sb: BtrfsSuper): Promise<ByteRange[]> {
  const map = new BtrfsMap(volume, sb);
  // Bootstrap: the system chunks (which hold the chunk tree) are in the superblock itself.
  const array = sb.sysChunkArray;
  for (let at = 0; at + 17 <= array.length; ) {
    const type = array[at + 8]!;
    const logical = Number(array.readBigUInt64LE(at + 9));
    if (type !== key.chunkItem) throw map.damaged('system chunk array holds something other than chunks');
    const stripes = array.readUInt16LE(at + 17 + 44);
    const itemSize = 48 + stripes * 32;
    map.addChunk(parseChunk(logical, array.subarray(at + 17, at + 17 + itemSize)));
    at += 17 + itemSize;
  }
  await map.walk(sb.chunkTree, (type, _objectid, offset, data) => {
    if (type === key.chunkItem) map.addChunk(parseChunk(Number(offset), data));
  });
  let extentRoot: number | null = null;
  await map.walk(sb.rootTree, (type, objectid, _offset, data) => {
    if (type === key.rootItem && objectid === extentTreeId) extentRoot = Number(data.readBigUInt64LE(176));
  });
  if (extentRoot === null) throw map.damaged('root tree has no extent tree');
  const used: ByteRange[] = [{ start: 0, length: Math.min(1024 * 1024, volume.size) }];
  for (const mirror of superblockMirrors) {
    if (mirror + 4096 <= volume.size) used.push({ start: mirror, length: 4096 });
  }
  await map.walk(extentRoot, (type, objectid, offset) => {
    const length = type === key.extentItem ? Number(offset) : type === key.metadataItem ? sb.nodeSize : 0;
    // Stripe by stripe: a long extent on striped profiles maps to many ranges.
    if (length > 0) for (const range of map.physical(Number(objectid), length)) used.push(range);
  });
  return mergeRanges(used);
}

export const btrfsReader: FilesystemReader = {
  family: 'btrfs',

  async detect(volume) {
    if (volume.size < superblockOffset + 4096) return false;
    return (await volume.read(superblockOffset + 64, 8)).toString('latin1') === '_BHRfS_M';
  },

  async usedMap(volume: Volume): Promise<UsedMap> {
    const sbBytes = await volume.read(superblockOffset, 4096);
    const sb = parseSuper(sbBytes);
    if (sb.checksummed && crc32c(sbBytes.subarray(0x20)) !== sbBytes.readUInt32LE(0)) {
      throw new FilesystemDamagedError(
        `${volume.name}: the btrfs superblock fails its checksum; run btrfs check on it`,
      );
    }
    const blockSize = sb.sectorSize || 4096;
    const label = sb.label ? { label: sb.label } : {};
    const fallback = (why: string): UsedMap => ({
      ...allBlocksMap('btrfs', volume, blockSize, `${volume.name}: ${why}; every block is copied`),
      ...label,
    });
    if (sb.nodeSize < 4096 || sb.nodeSize > 65536 || sb.sectorSize < 4096 || sb.sectorSize > 65536) {
      throw new FilesystemDamagedError(
        `${volume.name}: the btrfs superblock is damaged; run btrfs check on it`,
      );
    }
    if (sb.deviceBytes > volume.size) {
      throw new FilesystemDamagedError(
        `${volume.name}: the btrfs device says it has ${sb.deviceBytes} bytes, more than the ${volume.size}-byte ` +
          'partition holds; the partition or image is truncated',
      );
    }
    if (sb.numDevices !== 1) return fallback(`btrfs spans ${sb.numDevices} devices, which is not mapped yet`);
    if (sb.logTree !== 0) {
      return fallback(
        'btrfs has a log tree to replay (mounted, or not cleanly unmounted); freeze or unmount it',
      );
    }
    if (sb.incompat & incompatExtentTreeV2)
      return fallback('btrfs uses extent tree v2, which is not read yet');
    const fsid = sb.fsid.toString('hex');
    return {
      filesystem: 'btrfs',
      blockSize,
      usedRanges: await btrfsUsed(volume, sb),
      allBlocks: false,
      uuid: `${fsid.slice(0, 8)}-${fsid.slice(8, 12)}-${fsid.slice(12, 16)}-${fsid.slice(16, 20)}-${fsid.slice(20)}`,
      ...label,
      warnings: [],
    };
  },
};
