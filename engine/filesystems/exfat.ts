// exFAT used clusters from its allocation bitmap (the root directory's 0x81 entry): the boot region, the
// FATs and every cluster whose bit is set. The bitmap's own clusters are found through the FAT, or taken as
// contiguous when the FAT holds no chain for them.
import { forEachSetRun, RangeBuilder } from '../device/ranges.ts';
import { FilesystemDamagedError, type FilesystemReader, type UsedMap, type Volume } from './types.ts';

const bitmapEntry = 0x81;
const endOfDirectory = 0x00;
/** Chains longer than this mean a loop in a damaged FAT. */
const maxChain = 1 << 22;

export interface ExfatGeometry {
  sectorSize: number;
  clusterSize: number;
  volumeSectors: number;
  fatOffset: number;
  clusterHeapOffset: number;
  clusterCount: number;
  rootCluster: number;
  serial: string;
}

export function exfatGeometry(boot: Buffer): ExfatGeometry | null {
  if (boot.length < 512 || boot.toString('latin1', 3, 11) !== 'EXFAT   ') return null;
  const sectorShift = boot[108]!;
  const clusterShift = boot[109]!;
  if (sectorShift < 9 || sectorShift > 12 || clusterShift > 25 - sectorShift) return null;
  const sectorSize = 2 ** sectorShift;
  return {
    sectorSize,
    clusterSize: sectorSize * 2 ** clusterShift,
    volumeSectors: Number(boot.readBigUInt64LE(72)),
    fatOffset: boot.readUInt32LE(80) * sectorSize,
    clusterHeapOffset: boot.readUInt32LE(88) * sectorSize,
    clusterCount: boot.readUInt32LE(92),
    rootCluster: boot.readUInt32LE(96),
    serial: boot.readUInt32LE(100).toString(16).padStart(8, '0').toUpperCase(),
  };
}

export const exfatReader: FilesystemReader = {
  family: 'exfat',

  async detect(volume) {
    if (volume.size < 512) return false;
    return exfatGeometry(await volume.read(0, 512)) !== null;
  },

  async usedMap(volume: Volume): Promise<UsedMap> {
    const geo = exfatGeometry(await volume.read(0, 512));
    const damaged = (what: string) =>
      new FilesystemDamagedError(`${volume.name}: exFAT ${what}; run fsck.exfat on it`);
    if (!geo) throw damaged('boot sector is not valid');
    if (geo.volumeSectors * geo.sectorSize > volume.size) {
      throw new FilesystemDamagedError(
        `${volume.name}: the exFAT file system says it has ${geo.volumeSectors} sectors, more than the ` +
          `${volume.size}-byte partition holds; the partition or image is truncated`,
      );
    }
    if (geo.clusterHeapOffset + geo.clusterCount * geo.clusterSize > volume.size) {
      throw damaged('cluster heap runs past the end of the volume');
    }
    const validCluster = (cluster: number) => cluster >= 2 && cluster < geo.clusterCount + 2;
    const clusterOffset = (cluster: number) => geo.clusterHeapOffset + (cluster - 2) * geo.clusterSize;
    const fatEntry = async (cluster: number) =>
      (await volume.read(geo.fatOffset + cluster * 4, 4)).readUInt32LE(0);
    /** The clusters of a chain from the FAT; `contiguous` covers chains the FAT does not record. */
    const chain = async (first: number, contiguousClusters: number | null) => {
      const clusters: number[] = [];
      let cluster = first;
      while (validCluster(cluster)) {
        if (clusters.length >= maxChain) throw damaged('FAT chain loops');
        clusters.push(cluster);
        const next = await fatEntry(cluster);
        if (next === 0 && contiguousClusters !== null) {
          for (let i = 1; i < contiguousClusters; i++) clusters.push(first + i);
          break;
        }
        cluster = next;
      }
      return clusters;
    };
    if (!validCluster(geo.rootCluster))
      throw damaged(`root directory starts at invalid cluster ${geo.rootCluster}`);
    let bitmapFirst = 0;
    let bitmapLength = 0;
    search: for (const cluster of await chain(geo.rootCluster, null)) {
      const directory = await volume.read(clusterOffset(cluster), geo.clusterSize);
      for (let at = 0; at + 32 <= directory.length; at += 32) {
        const type = directory[at]!;
        if (type === endOfDirectory) break search;
        if (type === bitmapEntry && (directory[at + 1]! & 1) === 0) {
          bitmapFirst = directory.readUInt32LE(at + 20);
          bitmapLength = Number(directory.readBigUInt64LE(at + 24));
          break search;
        }
      }
    }
    if (!validCluster(bitmapFirst)) throw damaged('root directory has no allocation bitmap entry');
    if (bitmapLength * 8 < geo.clusterCount)
      throw damaged(`allocation bitmap holds ${bitmapLength * 8} bits`);
    const bitmapClusters = await chain(bitmapFirst, Math.ceil(bitmapLength / geo.clusterSize));
    const bitmap = Buffer.alloc(Math.ceil(geo.clusterCount / 8));
    for (const [i, cluster] of bitmapClusters.entries()) {
      if (i * geo.clusterSize >= bitmap.length) break;
      const piece = await volume.read(
        clusterOffset(cluster),
        Math.min(geo.clusterSize, bitmap.length - i * geo.clusterSize),
      );
      piece.copy(bitmap, i * geo.clusterSize);
    }
    const used = new RangeBuilder();
    used.add(0, geo.clusterHeapOffset);
    forEachSetRun(bitmap, geo.clusterCount, (first, count) =>
      used.add(clusterOffset(first + 2), count * geo.clusterSize),
    );
    return {
      filesystem: 'exfat',
      blockSize: geo.clusterSize,
      usedRanges: used.finish(),
      allBlocks: false,
      uuid: geo.serial,
      warnings: [],
    };
  },
};
