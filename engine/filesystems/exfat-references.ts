// What an exFAT file system's directory entries reference: walking the tree from the root directory, the
// clusters of every directory, of the allocation bitmap and up-case table, and of every file's data — contiguous
// when its stream extension says NoFatChain, else along its FAT chain. The used map from the allocation bitmap
// must cover them all.
import { exfatGeometry } from './exfat.ts';
import type { MapCrossCheck, ReferenceCheck } from './map-check.ts';
import { FilesystemDamagedError, type Volume } from './types.ts';

const endOfDirectory = 0x00;
const inUse = 0x80;
const secondaryEntry = 0x40;
const bitmapEntry = 0x81;
const upcaseEntry = 0x82;
const fileEntry = 0x85;
const fileNameEntry = 0xc1;
const allocationPossible = 0x1;
const noFatChain = 0x2;
const attrDirectory = 0x10;
/** exFAT directories hold at most 256 MiB; more, or a deeper tree, means damaged metadata. */
const maxDirectoryBytes = 256 * 1024 * 1024;
const maxDepth = 128;
/** Chains longer than this mean a loop in a damaged FAT. */
const maxChain = 1 << 22;
/** The FAT is read in pieces of this many bytes as chains reach into them. */
const fatPieceBytes = 1024 * 1024;

export const exfatCrossCheck: MapCrossCheck = {
  allocationRecord: 'the allocation bitmap',
  repairTool: 'fsck.exfat',

  async run(volume: Volume, _map, check: ReferenceCheck) {
    const geo = exfatGeometry(await volume.read(0, 512));
    const damaged = (what: string) =>
      new FilesystemDamagedError(`${volume.name}: exFAT ${what}; run fsck.exfat on it`);
    if (!geo) throw damaged('boot sector is not valid');
    const validCluster = (cluster: number) => cluster >= 2 && cluster < geo.clusterCount + 2;
    const clusterOffset = (cluster: number) => geo.clusterHeapOffset + (cluster - 2) * geo.clusterSize;
    const fatPieces = new Map<number, Buffer>();
    const fatEntry = async (cluster: number) => {
      const at = cluster * 4;
      const pieceIndex = Math.floor(at / fatPieceBytes);
      let piece = fatPieces.get(pieceIndex);
      if (!piece) {
        const fatBytes = (geo.clusterCount + 2) * 4;
        const start = pieceIndex * fatPieceBytes;
        piece = await volume.read(geo.fatOffset + start, Math.min(fatPieceBytes, fatBytes - start));
        fatPieces.set(pieceIndex, piece);
      }
      return piece.readUInt32LE(at - pieceIndex * fatPieceBytes);
    };

    /** The clusters holding `bytes` bytes from `first`: contiguous, or along the FAT (contiguous where it has no entry). */
    const clustersOf = async (
      first: number,
      bytes: number,
      contiguous: boolean,
      contiguousIfNoFat: boolean,
    ) => {
      const count = Math.ceil(bytes / geo.clusterSize);
      if (count > maxChain) throw damaged(`entry says it holds ${bytes} bytes`);
      const clusters: number[] = [];
      let cluster = first;
      while (clusters.length < count) {
        clusters.push(cluster);
        if (contiguous) {
          cluster++;
          continue;
        }
        if (!validCluster(cluster)) break;
        const next = await fatEntry(cluster);
        if (next === 0 && contiguousIfNoFat) {
          contiguous = true;
          cluster++;
        } else {
          cluster = next;
          if (!validCluster(cluster)) break;
        }
      }
      return clusters;
    };

    /** Hands the clusters to `check` as runs of adjacent clusters. */
    const reference = (clusters: number[], owner: () => string) => {
      for (let i = 0; i < clusters.length; ) {
        let j = i + 1;
        while (j < clusters.length && clusters[j] === clusters[j - 1]! + 1) j++;
        const first = clusters[i]!;
        const start = validCluster(first) && validCluster(clusters[j - 1]!) ? clusterOffset(first) : -1;
        check.reference(start, (j - i) * geo.clusterSize, owner);
        i = j;
      }
    };

    const readClusters = async (clusters: number[]) => {
      const pieces: Buffer[] = [];
      for (const cluster of clusters) {
        if (!validCluster(cluster)) break;
        pieces.push(await volume.read(clusterOffset(cluster), geo.clusterSize));
      }
      return Buffer.concat(pieces);
    };

    const visited = new Set<number>();
    const walk = async (directory: Buffer, path: string, depth: number): Promise<void> => {
      if (depth > maxDepth) throw damaged(`directory tree is deeper than ${maxDepth}`);
      for (let at = 0; at + 32 <= directory.length; at += 32) {
        const type = directory[at]!;
        if (type === endOfDirectory) return;
        if (!(type & inUse)) continue;
        if (type === bitmapEntry || type === upcaseEntry) {
          const first = directory.readUInt32LE(at + 20);
          const bytes = Number(directory.readBigUInt64LE(at + 24));
          const what = type === bitmapEntry ? 'the allocation bitmap' : 'the up-case table';
          reference(await clustersOf(first, bytes, false, true), () => what);
          continue;
        }
        if (type !== fileEntry) continue;
        // A file entry set: the file entry, then its secondary count of stream extension, names and others.
        const secondaries = directory[at + 1]!;
        const isDirectory = (directory.readUInt16LE(at + 4) & attrDirectory) !== 0;
        const setEnd = Math.min(directory.length, at + 32 * (1 + secondaries));
        let name = '';
        for (let s = at + 32; s + 32 <= setEnd; s += 32) {
          if (directory[s] === fileNameEntry)
            name += directory.toString('utf16le', s + 2, s + 32).replace(/\0.*$/s, '');
        }
        const owner = () => `${isDirectory ? 'directory' : 'file'} ${path}/${name}`;
        let streamSeen = false;
        for (let s = at + 32; s + 32 <= setEnd; s += 32) {
          const secondary = directory[s]!;
          if (!(secondary & inUse) || !(secondary & secondaryEntry)) break;
          const flags = directory[s + 1]!;
          if (!(flags & allocationPossible)) continue;
          const first = directory.readUInt32LE(s + 20);
          const bytes = Number(directory.readBigUInt64LE(s + 24));
          if (bytes === 0) continue;
          const clusters = await clustersOf(first, bytes, (flags & noFatChain) !== 0, false);
          reference(clusters, owner);
          // The first secondary is the stream extension: its clusters are the file's (a directory's entries).
          if (!streamSeen && isDirectory) {
            if (bytes > maxDirectoryBytes)
              throw damaged(`directory ${path}/${name} says it holds ${bytes} bytes`);
            if (!visited.has(first)) {
              visited.add(first);
              await walk(await readClusters(clusters), `${path}/${name}`, depth + 1);
            }
          }
          streamSeen = true;
        }
        at = setEnd - 32;
      }
    };

    if (!validCluster(geo.rootCluster))
      throw damaged(`root directory starts at invalid cluster ${geo.rootCluster}`);
    // The root directory has no entry of its own: it is a plain FAT chain.
    const rootClusters: number[] = [];
    for (let cluster = geo.rootCluster; validCluster(cluster); cluster = await fatEntry(cluster)) {
      if (rootClusters.length * geo.clusterSize >= maxDirectoryBytes)
        throw damaged('root directory chain loops');
      rootClusters.push(cluster);
    }
    reference(rootClusters, () => 'the root directory');
    visited.add(geo.rootCluster);
    await walk(await readClusters(rootClusters), '', 0);
  },
};
