// What a FAT12/16/32 file system's records reference, beyond the FAT the used map comes from: every cluster any
// FAT copy marks used or chains to, and the first cluster of every file and directory found by walking the
// directory tree (a whole file whose FAT entries were cleared is referenced only there). Entries that point
// nowhere and cross-links (which orphan the rest of a chain) are damage.
import { badCluster, entryReader, type FatGeometry, fatGeometry } from './fat.ts';
import type { MapCrossCheck, ReferenceCheck } from './map-check.ts';
import { FilesystemDamagedError, type Volume } from './types.ts';

/** FATs are read in pieces of this many bytes: a multiple of 3 and 4, so every piece starts on an even entry. */
const fatPieceBytes = 3 * 1024 * 1024;
/** Directory chains longer than this, or trees deeper, mean a loop in damaged metadata. */
const maxDirectoryClusters = 1 << 20;
const maxDepth = 64;
const attrVolumeLabel = 0x08;
const attrDirectory = 0x10;
const attrLongName = 0x0f;

interface FatLayout {
  geo: FatGeometry;
  clusterBytes: number;
  dataStart: number;
  clusterEnd: number;
  entryBytes: number;
  fatBytes: number;
  clusterStart(cluster: number): number;
}

function layoutOf(geo: FatGeometry): FatLayout {
  const sector = geo.bytesPerSector;
  const clusterBytes = geo.sectorsPerCluster * sector;
  const dataStart = geo.dataStartSector * sector;
  const entryBytes = geo.kind === 'fat12' ? 1.5 : geo.kind === 'fat16' ? 2 : 4;
  return {
    geo,
    clusterBytes,
    dataStart,
    clusterEnd: geo.clusterCount + 2,
    entryBytes,
    fatBytes: Math.ceil((geo.clusterCount + 2) * entryBytes),
    clusterStart: (cluster) => dataStart + (cluster - 2) * clusterBytes,
  };
}

/** Entry values from here up end a chain. */
const endOfChain = { fat12: 0xff8, fat16: 0xfff8, fat32: 0x0ffffff8 };

/**
 * Every FAT copy: clusters it marks used and clusters its entries chain to must be in the map; an entry that is
 * neither free, bad, end of chain nor a cluster number, or two entries chaining to one cluster (a cross-link, which
 * orphans the rest of a chain), is damage. Returns the clusters the primary copy chains to (one bit each), so the
 * directory walk can find a file starting where a chain also leads.
 */
async function referenceFatCopies(
  volume: Volume,
  fat: FatLayout,
  used: Uint8Array,
  check: ReferenceCheck,
): Promise<Uint8Array> {
  const bad = badCluster[fat.geo.kind];
  const end = endOfChain[fat.geo.kind];
  const damaged = (problem: string) =>
    new FilesystemDamagedError(`${volume.name}: ${problem}; run fsck.vfat on it`);
  // Copies are kept alike unless FAT32 mirroring is off; then only the active one means anything.
  const copies = fat.geo.activeFat === null ? [...Array(fat.geo.fatCount).keys()] : [fat.geo.activeFat];
  let primaryChainedTo: Uint8Array | null = null;
  for (const copy of copies) {
    const chainedTo = new Uint8Array((fat.clusterEnd + 7) >> 3);
    primaryChainedTo ??= chainedTo;
    const copyStart = (fat.geo.reservedSectors + copy * fat.geo.fatSectors) * fat.geo.bytesPerSector;
    for (let pieceStart = 0; pieceStart < fat.fatBytes; pieceStart += fatPieceBytes) {
      const piece = await volume.read(
        copyStart + pieceStart,
        Math.min(fatPieceBytes, fat.fatBytes - pieceStart),
      );
      const entry = entryReader(piece, fat.geo.kind);
      const firstEntry = pieceStart / fat.entryBytes;
      const lastEntry = Math.min(fat.clusterEnd, firstEntry + Math.floor(piece.length / fat.entryBytes));
      for (let cluster = Math.max(2, firstEntry); cluster < lastEntry; cluster++) {
        const value = entry(cluster - firstEntry);
        if (value === 0 || value === bad) continue;
        if (!used[cluster]) {
          check.reference(
            fat.clusterStart(cluster),
            fat.clusterBytes,
            () => `FAT copy ${copy + 1} marks cluster ${cluster} used`,
          );
        }
        if (value >= end) continue;
        if (value < 2 || value >= fat.clusterEnd) {
          throw damaged(`FAT copy ${copy + 1} chains cluster ${cluster} to ${value}, which is no cluster`);
        }
        if (chainedTo[value >> 3]! & (1 << (value & 7))) {
          throw damaged(`FAT copy ${copy + 1} chains two clusters to cluster ${value} (a cross-link)`);
        }
        chainedTo[value >> 3]! |= 1 << (value & 7);
        if (!used[value]) {
          check.reference(
            fat.clusterStart(value),
            fat.clusterBytes,
            () => `FAT copy ${copy + 1} chains cluster ${cluster} to cluster ${value}`,
          );
        }
      }
    }
  }
  return primaryChainedTo ?? new Uint8Array((fat.clusterEnd + 7) >> 3);
}

/** The 8.3 name of a directory entry, for messages. */
function shortName(entry: Buffer): string {
  const base = entry.toString('latin1', 0, 8).trimEnd();
  const extension = entry.toString('latin1', 8, 11).trimEnd();
  return extension ? `${base}.${extension}` : base;
}

/** Walks the directory tree from the root: every file's and directory's first cluster must be in the map. */
async function referenceDirectoryTree(
  volume: Volume,
  fat: FatLayout,
  used: Uint8Array,
  chainedTo: Uint8Array,
  check: ReferenceCheck,
) {
  const fatStart =
    (fat.geo.reservedSectors + (fat.geo.activeFat ?? 0) * fat.geo.fatSectors) * fat.geo.bytesPerSector;
  // Read from the even entry before it, where FAT12's 1.5-byte entries start on a byte.
  const fatEntry = async (cluster: number) => {
    const even = cluster - (cluster & 1);
    return entryReader(await volume.read(fatStart + even * fat.entryBytes, 8), fat.geo.kind)(cluster - even);
  };
  const visited = new Set<number>();
  const directoryClusters = async (first: number) => {
    const clusters: number[] = [];
    for (let cluster = first; cluster >= 2 && cluster < fat.clusterEnd; cluster = await fatEntry(cluster)) {
      if (visited.has(cluster)) break;
      if (visited.size >= maxDirectoryClusters) {
        throw new FilesystemDamagedError(`${volume.name}: the FAT directory tree loops; run fsck.vfat on it`);
      }
      visited.add(cluster);
      clusters.push(cluster);
    }
    return clusters;
  };
  const walk = async (directory: Buffer, path: string, depth: number): Promise<void> => {
    if (depth > maxDepth) {
      throw new FilesystemDamagedError(
        `${volume.name}: the FAT directory tree is deeper than ${maxDepth}; run fsck.vfat on it`,
      );
    }
    for (let at = 0; at + 32 <= directory.length; at += 32) {
      const entry = directory.subarray(at, at + 32);
      if (entry[0] === 0x00) return;
      const attributes = entry[11]!;
      if (
        entry[0] === 0xe5 ||
        attributes === attrLongName ||
        attributes & attrVolumeLabel ||
        entry[0] === 0x2e
      )
        continue;
      const first =
        (fat.geo.kind === 'fat32' ? entry.readUInt16LE(20) * 0x10000 : 0) + entry.readUInt16LE(26);
      if (first === 0) continue;
      const name = `${path}/${shortName(entry)}`;
      if (first < 2 || first >= fat.clusterEnd || !used[first]) {
        check.reference(fat.clusterStart(first), fat.clusterBytes, () => `the first cluster of ${name}`);
      }
      if (first >= 2 && first < fat.clusterEnd) {
        // A file starting where a chain (or another entry) also leads shares its clusters: a cross-link.
        if (chainedTo[first >> 3]! & (1 << (first & 7))) {
          throw new FilesystemDamagedError(
            `${volume.name}: ${name} starts at cluster ${first}, which another chain or entry also uses (a cross-link); run fsck.vfat on it`,
          );
        }
        chainedTo[first >> 3]! |= 1 << (first & 7);
      }
      if (attributes & attrDirectory && first >= 2 && first < fat.clusterEnd) {
        const clusters = await directoryClusters(first);
        const pieces = [];
        for (const cluster of clusters)
          pieces.push(await volume.read(fat.clusterStart(cluster), fat.clusterBytes));
        await walk(Buffer.concat(pieces), name, depth + 1);
      }
    }
  };
  if (fat.geo.kind === 'fat32') {
    const boot = await volume.read(0, 512);
    const clusters = await directoryClusters(boot.readUInt32LE(44));
    const pieces = [];
    for (const cluster of clusters)
      pieces.push(await volume.read(fat.clusterStart(cluster), fat.clusterBytes));
    await walk(Buffer.concat(pieces), '', 0);
  } else {
    const rootStart =
      (fat.geo.reservedSectors + fat.geo.fatCount * fat.geo.fatSectors) * fat.geo.bytesPerSector;
    await walk(await volume.read(rootStart, fat.geo.rootDirSectors * fat.geo.bytesPerSector), '', 0);
  }
}

export const fatCrossCheck: MapCrossCheck = {
  allocationRecord: 'the FAT',
  repairTool: 'fsck.vfat',

  async run(volume, map, check) {
    const geo = fatGeometry(await volume.read(0, 512));
    if (!geo) throw new FilesystemDamagedError(`${volume.name}: the FAT boot sector is not valid`);
    const fat = layoutOf(geo);
    // One byte per cluster: is it wholly inside the map? (FAT rules look clusters up at random, by the million.)
    const used = new Uint8Array(fat.clusterEnd);
    for (const range of map.usedRanges) {
      const first = Math.max(2, Math.ceil((range.start - fat.dataStart) / fat.clusterBytes) + 2);
      const end = Math.min(
        fat.clusterEnd,
        Math.floor((range.start + range.length - fat.dataStart) / fat.clusterBytes) + 2,
      );
      if (end > first) used.fill(1, first, end);
    }
    const chainedTo = await referenceFatCopies(volume, fat, used, check);
    await referenceDirectoryTree(volume, fat, used, chainedTo, check);
  },
};
