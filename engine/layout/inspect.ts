// A disk's layout as the snapshot core and the repository use it: the partition table, each partition's
// file system and used ranges, and the disk's used ranges — table structures and boot area, plus every
// partition's used bytes, absolute, sorted and merged. Unallocated gaps are not in it.
import { stat } from 'node:fs/promises';
import { deviceUses } from '../device/busy.ts';
import { openReader } from '../device/open.ts';
import { mergeRanges, rangesBytes, shiftRanges } from '../device/ranges.ts';
import type { BlockReader, ByteRange } from '../device/types.ts';
import { type MapOptions, usedMapOf } from '../filesystems/index.ts';
import { partitionVolume } from '../filesystems/volume.ts';
import { readPartitionTable } from '../partition/read.ts';
import type { PartitionEntry } from '../partition/types.ts';
import { partitionTypeName } from './type-names.ts';

/** Space before the first partition that boot loaders use (GRUB's core image on MBR disks lives here). */
const bootAreaLimit = 1024 * 1024;

export interface PartitionLayout {
  index: number;
  start: number;
  size: number;
  /** GPT type GUID or MBR type byte ("0x83"); "none" for a device without a table. */
  type: string;
  /** A readable name of the type, when known ("Linux filesystem", "EFI System"). */
  typeName?: string;
  /** "ext4", "fat32", "ntfs", "xfs", "btrfs", "swap", …; null when no known file system was found. */
  filesystem: string | null;
  /** The file system's allocation unit (or the fallback unit for an every-block map). */
  blockSize: number;
  usedBytes: number;
  /** Every block is copied (unknown content, or metadata that could not be trusted; see warnings). */
  allBlocks: boolean;
  /** Absolute device bytes, sorted and merged. */
  usedRanges: ByteRange[];
  /** Why every block is copied, when the file system's map could not be trusted (damaged, or not read). */
  copiedWholeBecause?: string;
  label?: string;
  uuid?: string;
  /** GPT partition name. */
  name?: string;
}

export interface DiskLayout {
  path: string;
  size: number;
  partitionTable: 'gpt' | 'mbr' | 'none';
  sectorSize: number;
  diskId?: string;
  partitions: PartitionLayout[];
  /** Everything a backup must copy: table structures, the boot area, every partition's used bytes. */
  usedRanges: ByteRange[];
  usedBytes: number;
  warnings: string[];
}

async function layoutPartition(
  reader: BlockReader,
  entry: PartitionEntry,
  volumeName: string,
  options: MapOptions,
): Promise<{ layout: PartitionLayout; warnings: string[] }> {
  const volume = partitionVolume(reader, entry.start, entry.size, volumeName);
  const map = await usedMapOf(volume, options);
  const usedRanges = shiftRanges(map.usedRanges, entry.start, volume.size);
  const typeName = partitionTypeName(entry.type);
  return {
    layout: {
      index: entry.index,
      start: entry.start,
      size: entry.size,
      type: entry.type,
      ...(typeName ? { typeName } : {}),
      filesystem: map.filesystem === 'unknown' ? null : map.filesystem,
      blockSize: map.blockSize,
      usedBytes: rangesBytes(usedRanges),
      allBlocks: map.allBlocks,
      usedRanges,
      ...(map.allBlocks && map.warnings.length ? { copiedWholeBecause: map.warnings.join('; ') } : {}),
      ...(map.label ? { label: map.label } : {}),
      ...(map.uuid ? { uuid: map.uuid } : {}),
      ...(entry.name ? { name: entry.name } : {}),
    },
    warnings: map.warnings,
  };
}

/** A mounted source keeps changing under the map: say so (the snapshot core reads it at the consistent point). */
async function liveUseWarnings(path: string): Promise<string[]> {
  const info = await stat(path).catch(() => null);
  if (!info?.isBlockDevice()) return [];
  const uses = (await deviceUses(path)).filter((use) => use.includes(' is mounted on '));
  if (!uses.length) return [];
  return [
    `${uses.join('; ')}: the used map is a moment's view of a live file system; back it up through a snapshot ` +
      '(which reads the map at the consistent point) rather than copying this map later',
  ];
}

/**
 * Reads the partition table and every partition's allocation metadata. Throws PartitionTableError when the
 * table cannot be trusted; a file system whose metadata cannot be trusted is copied whole, with a warning
 * (or, with `strict`, throws FilesystemDamagedError naming the partition). Given a path, opens it read-only.
 *
 * The map is exact for the bytes read: inspect a live file system through the snapshot's view at the
 * consistent point (or frozen/unmounted), since allocations made after the read are not in it.
 */
export async function inspectDisk(
  source: BlockReader | string,
  options: MapOptions = {},
): Promise<DiskLayout> {
  if (typeof source === 'string') {
    const reader = await openReader(source);
    try {
      return await inspectDisk(reader, options);
    } finally {
      await reader.close();
    }
  }
  const reader = source;
  const table = await readPartitionTable(reader);
  const warnings = [...table.warnings, ...(await liveUseWarnings(reader.path))];
  const partitions: PartitionLayout[] = [];
  for (const entry of table.partitions) {
    const name = table.kind === 'none' ? reader.path : `partition ${entry.index} of ${reader.path}`;
    const { layout, warnings: found } = await layoutPartition(reader, entry, name, options);
    partitions.push(layout);
    for (const warning of found) warnings.push(warning);
  }
  const used: ByteRange[] = [...table.tableRanges];
  if (table.kind !== 'none') {
    let firstStart = reader.size;
    for (const p of table.partitions) firstStart = Math.min(firstStart, p.start);
    used.push({ start: 0, length: Math.min(firstStart, bootAreaLimit) });
  }
  // Range by range: a fragmented file system has millions, too many to spread into one call.
  for (const p of partitions) for (const range of p.usedRanges) used.push(range);
  const usedRanges = mergeRanges(shiftRanges(used, 0, reader.size));
  return {
    path: reader.path,
    size: reader.size,
    partitionTable: table.kind,
    sectorSize: table.sectorSize,
    ...(table.diskId ? { diskId: table.diskId } : {}),
    partitions,
    usedRanges,
    usedBytes: rangesBytes(usedRanges),
    warnings,
  };
}
