// FAT12/16/32 used space from the first FAT (the active one when FAT32 mirroring is off): the reserved sectors, every FAT copy and (FAT12/16) the root
// directory are always used; a data cluster is used when its FAT entry is not zero (bad clusters excepted,
// since reading them only yields errors).
import { RangeBuilder } from '../device/ranges.ts';
import { FilesystemDamagedError, type FilesystemReader, type UsedMap, type Volume } from './types.ts';

export interface FatGeometry {
  bytesPerSector: number;
  sectorsPerCluster: number;
  reservedSectors: number;
  fatCount: number;
  fatSectors: number;
  rootDirSectors: number;
  totalSectors: number;
  dataStartSector: number;
  clusterCount: number;
  kind: 'fat12' | 'fat16' | 'fat32';
  /** FAT32 with mirroring turned off (BPB_ExtFlags bit 7): the one FAT in use; null when every copy is kept alike. */
  activeFat: number | null;
}

const isPowerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;

/** The BPB's fields, or null when sector 0 is not a FAT boot sector. */
export function fatGeometry(boot: Buffer): FatGeometry | null {
  if (boot.length < 512 || boot[510] !== 0x55 || boot[511] !== 0xaa) return null;
  if (boot[0] !== 0xeb && boot[0] !== 0xe9) return null;
  const bytesPerSector = boot.readUInt16LE(11);
  const sectorsPerCluster = boot[13]!;
  const reservedSectors = boot.readUInt16LE(14);
  const fatCount = boot[16]!;
  const rootEntries = boot.readUInt16LE(17);
  const totalSectors = boot.readUInt16LE(19) || boot.readUInt32LE(32);
  const fatSectors = boot.readUInt16LE(22) || boot.readUInt32LE(36);
  if (![512, 1024, 2048, 4096].includes(bytesPerSector) || !isPowerOfTwo(sectorsPerCluster)) return null;
  if (reservedSectors < 1 || fatCount < 1 || fatCount > 4 || fatSectors === 0 || totalSectors === 0)
    return null;
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector);
  const dataStartSector = reservedSectors + fatCount * fatSectors + rootDirSectors;
  if (dataStartSector >= totalSectors) return null;
  const clusterCount = Math.floor((totalSectors - dataStartSector) / sectorsPerCluster);
  const kind = clusterCount < 4085 ? 'fat12' : clusterCount < 65525 ? 'fat16' : 'fat32';
  const extFlags = boot.readUInt16LE(40);
  const activeFat = kind === 'fat32' && extFlags & 0x80 ? extFlags & 0x0f : null;
  if (activeFat !== null && activeFat >= fatCount) return null;
  return {
    bytesPerSector,
    sectorsPerCluster,
    reservedSectors,
    fatCount,
    fatSectors,
    rootDirSectors,
    totalSectors,
    dataStartSector,
    clusterCount,
    kind,
    activeFat,
  };
}

/** Entry reader for each FAT width: value of the entry of cluster `n`. */
export function entryReader(fat: Buffer, kind: FatGeometry['kind']): (n: number) => number {
  if (kind === 'fat12') {
    return (n) => {
      const at = n + (n >> 1);
      const pair = fat[at]! | (fat[at + 1]! << 8);
      return n & 1 ? pair >> 4 : pair & 0xfff;
    };
  }
  if (kind === 'fat16') return (n) => fat.readUInt16LE(n * 2);
  return (n) => fat.readUInt32LE(n * 4) & 0x0fffffff;
}

export const badCluster = { fat12: 0xff7, fat16: 0xfff7, fat32: 0x0ffffff7 };
const fatPieceBytes = 3 * 1024 * 1024;

export const fatReader: FilesystemReader = {
  family: 'fat',

  async detect(volume) {
    if (volume.size < 512) return false;
    return fatGeometry(await volume.read(0, 512)) !== null;
  },

  async usedMap(volume: Volume): Promise<UsedMap> {
    const boot = await volume.read(0, 512);
    const geo = fatGeometry(boot);
    if (!geo) throw new FilesystemDamagedError(`${volume.name}: the FAT boot sector is not valid`);
    const sector = geo.bytesPerSector;
    const clusterBytes = geo.sectorsPerCluster * sector;
    if (geo.totalSectors * sector > volume.size) {
      throw new FilesystemDamagedError(
        `${volume.name}: the ${geo.kind.toUpperCase()} file system says it has ${geo.totalSectors} sectors, more than ` +
          `the ${volume.size}-byte partition holds; the partition or image is truncated`,
      );
    }
    const entryBytes = geo.kind === 'fat12' ? 1.5 : geo.kind === 'fat16' ? 2 : 4;
    const fatBytesNeeded = Math.ceil((geo.clusterCount + 2) * entryBytes);
    if (fatBytesNeeded > geo.fatSectors * sector) {
      throw new FilesystemDamagedError(
        `${volume.name}: the FAT (${geo.fatSectors} sectors) is too small for ${geo.clusterCount} clusters; ` +
          'the boot sector is damaged — run fsck.vfat on it',
      );
    }
    const bad = badCluster[geo.kind];
    const used = new RangeBuilder();
    used.add(0, geo.dataStartSector * sector);
    const dataStart = geo.dataStartSector * sector;
    // Read the FAT in pieces (a FAT32 FAT can be hundreds of MiB); the piece size is a multiple of 3 and 4 bytes,
    // so every piece starts on an entry boundary (an even entry, for FAT12's 1.5-byte entries).
    const fatStart = (geo.reservedSectors + (geo.activeFat ?? 0) * geo.fatSectors) * sector;
    const clusterEnd = geo.clusterCount + 2;
    for (let pieceStart = 0; pieceStart < fatBytesNeeded; pieceStart += fatPieceBytes) {
      const piece = await volume.read(
        fatStart + pieceStart,
        Math.min(fatPieceBytes, fatBytesNeeded - pieceStart),
      );
      const entry = entryReader(piece, geo.kind);
      const firstEntry = pieceStart / entryBytes;
      const lastEntry = Math.min(clusterEnd, firstEntry + Math.floor(piece.length / entryBytes));
      for (let cluster = Math.max(2, firstEntry); cluster < lastEntry; cluster++) {
        const value = entry(cluster - firstEntry);
        if (value !== 0 && value !== bad) used.add(dataStart + (cluster - 2) * clusterBytes, clusterBytes);
      }
    }
    const labelAt = geo.kind === 'fat32' ? 71 : 43;
    const serialAt = geo.kind === 'fat32' ? 67 : 39;
    const label = boot.toString('latin1', labelAt, labelAt + 11).trim();
    return {
      filesystem: geo.kind,
      blockSize: clusterBytes,
      usedRanges: used.finish(),
      allBlocks: false,
      uuid: boot.readUInt32LE(serialAt).toString(16).padStart(8, '0').toUpperCase(),
      ...(label && label !== 'NO NAME' ? { label } : {}),
      warnings: [],
    };
  },
};
