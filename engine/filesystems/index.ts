// Picks the reader for whatever file system a volume holds and returns its used map. Unknown content,
// and metadata that cannot be trusted, become an explicit every-block map with a warning saying why —
// never a crash and never a silently short map. A map is trusted only once the file system's other records
// (data runs, chains, directory entries, extent trees) are found inside it (map-check.ts).
import { btrfsReader } from './btrfs.ts';
import { exfatReader } from './exfat.ts';
import { exfatCrossCheck } from './exfat-references.ts';
import { extReader } from './ext.ts';
import { extCrossCheck } from './ext-references.ts';
import { fatReader } from './fat.ts';
import { fatCrossCheck } from './fat-references.ts';
import { crossCheckMap, type MapCrossCheck } from './map-check.ts';
import { ntfsReader } from './ntfs.ts';
import { ntfsCrossCheck } from './ntfs-references.ts';
import { opaqueReader } from './opaque.ts';
import { swapReader } from './swap.ts';
import {
  allBlocksMap,
  FilesystemDamagedError,
  type FilesystemReader,
  type UsedMap,
  type Volume,
} from './types.ts';
import { xfsReader } from './xfs.ts';
import { xfsCrossCheck } from './xfs-references.ts';

/** In detection order: signatures at fixed offsets that cannot be mistaken for one another first. */
export const filesystemReaders: readonly FilesystemReader[] = [
  extReader,
  xfsReader,
  btrfsReader,
  ntfsReader,
  exfatReader,
  fatReader,
  swapReader,
  opaqueReader,
];

/** Per reader family: where the file system's other records say its bytes are (a map must cover them). */
const crossChecks: ReadonlyMap<string, MapCrossCheck> = new Map([
  ['ntfs', ntfsCrossCheck],
  ['fat', fatCrossCheck],
  ['exfat', exfatCrossCheck],
  ['ext', extCrossCheck],
  ['xfs', xfsCrossCheck],
]);

export interface MapOptions {
  /** Throw FilesystemDamagedError instead of falling back to every block. */
  strict?: boolean;
  /** Unit used when the whole volume is copied (default 4096). */
  fallbackBlockSize?: number;
  /** Check the map against the file system's own records before trusting it (default true). Off only where no
   * copy follows: measuring the check, or a drive listing that shows sizes. */
  crossCheck?: boolean;
}

/** The reader whose signature the volume carries, or null. */
export async function detectFilesystem(volume: Volume): Promise<FilesystemReader | null> {
  for (const reader of filesystemReaders) {
    try {
      if (await reader.detect(volume)) return reader;
    } catch (error) {
      if (!(error instanceof FilesystemDamagedError)) throw error;
    }
  }
  return null;
}

/** The used map of a volume: from its file system's allocation metadata, or every block with a warning. */
export async function usedMapOf(volume: Volume, options: MapOptions = {}): Promise<UsedMap> {
  const fallbackBlockSize = options.fallbackBlockSize ?? 4096;
  const reader = await detectFilesystem(volume);
  if (!reader) {
    return {
      ...allBlocksMap(
        'unknown',
        volume,
        fallbackBlockSize,
        `${volume.name}: no known file system; every block is copied`,
      ),
      filesystem: 'unknown',
    };
  }
  // A map that fails its cross-check keeps its name and unit: only its ranges are not believed.
  let filesystem = reader.family;
  let blockSize = fallbackBlockSize;
  try {
    const map = await reader.usedMap(volume);
    const crossCheck = crossChecks.get(reader.family);
    if (map.allBlocks || !crossCheck || options.crossCheck === false) return map;
    filesystem = map.filesystem;
    blockSize = map.blockSize;
    await crossCheckMap(volume, map, crossCheck);
    return map;
  } catch (error) {
    if (options.strict || !(error instanceof FilesystemDamagedError)) throw error;
    return allBlocksMap(
      filesystem,
      volume,
      blockSize,
      `${(error as Error).message}. Every block of it is copied instead`,
    );
  }
}
