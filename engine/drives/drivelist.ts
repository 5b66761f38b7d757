// Lists the drives a user can back up or restore to: the machine's disks (via drivelist, with the disk
// the running system lives on flagged) plus the image files registered in the engine's config. Partitions
// come from the layout inspector when the drive is readable; otherwise the list is empty, not an error.
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import drivelist from 'drivelist';
import type { Drive, Partition } from '../../protocol/model.ts';
import { inspectDisk } from '../layout/inspect.ts';

type Layout = { table: Drive['partitionTable']; partitions: Partition[] };

/** Inspected layouts by device, reused while the device's size and mtime are unchanged (and for 10 s at most). */
const layoutCache = new Map<string, { key: string; at: number; layout: Layout }>();
const LAYOUT_CACHE_MS = 10_000;

async function partitionsOf(device: string): Promise<Layout> {
  const info = await stat(device).catch(() => null);
  const key = `${info?.size}:${info?.mtimeMs}:${info?.rdev}`;
  const cached = layoutCache.get(device);
  if (cached && cached.key === key && Date.now() - cached.at < LAYOUT_CACHE_MS) return cached.layout;
  let layout: Layout;
  try {
    // A listing shows sizes, often: it skips the cross-check against the file systems' own records (reading a
    // large disk's whole MFT or inode tables); a backup always makes it.
    const disk = await inspectDisk(device, { crossCheck: false });
    layout = {
      table: disk.partitionTable,
      partitions: disk.partitions.map((partition) => ({
        index: partition.index,
        start: partition.start,
        size: partition.size,
        type: partition.typeName ?? partition.type,
        filesystem: partition.filesystem,
        blockSize: partition.blockSize,
        usedBytes: partition.usedBytes,
      })),
    };
  } catch {
    // Unreadable (no permission, no medium) or not inspectable: show the drive without partitions.
    layout = { table: null, partitions: [] };
  }
  layoutCache.set(device, { key, at: Date.now(), layout });
  return layout;
}

function tableKind(type: string | null | undefined): Drive['partitionTable'] {
  if (type === 'gpt') return 'gpt';
  if (type === 'none') return 'none';
  if (type === 'mbr' || type === 'dos') return 'mbr';
  return null;
}

/**
 * Which disk holds the running system. drivelist calls every fixed disk a system disk, which is right for a
 * machine running from its own disk; a system that runs from elsewhere — the rescue media, booted from a CD or
 * a USB stick — names its disks in DISKLINE_SYSTEM_DISKS (device paths, space-separated), and the fixed disks
 * it came to restore are then not refused as its own.
 */
export function holdsRunningSystem(disk: { device: string; isSystem: boolean }): boolean {
  const named = process.env.DISKLINE_SYSTEM_DISKS;
  if (named === undefined) return disk.isSystem;
  return named.split(/\s+/).includes(disk.device);
}

/** The machine's disks. Virtual devices without a size (zram, empty loop devices) are left out. */
export async function listDisks(withPartitions = true): Promise<Drive[]> {
  const found = await drivelist.list();
  const disks = found.filter(
    (disk) => disk.size !== null && disk.size > 0 && !disk.device.startsWith('/dev/zram'),
  );
  return Promise.all(
    disks.map(async (disk): Promise<Drive> => {
      const layout = withPartitions ? await partitionsOf(disk.device) : { table: null, partitions: [] };
      return {
        device: disk.device,
        description: disk.description || disk.device,
        size: disk.size ?? 0,
        isSystem: holdsRunningSystem(disk),
        isRemovable: disk.isRemovable,
        mountpoints: disk.mountpoints.map((mount) => mount.path),
        partitionTable: tableKind(layout.table) ?? tableKind(disk.partitionTableType),
        partitions: layout.partitions,
        attachedAs: null,
      };
    }),
  );
}

/** One registered image file as a drive; a missing image is listed with size 0 so the user can remove it. */
export async function imageDrive(path: string, withPartitions = true): Promise<Drive> {
  const absolute = resolve(path);
  let size = 0;
  let description = `Image file ${basename(absolute)}`;
  try {
    size = (await stat(absolute)).size;
  } catch {
    description = `Image file ${basename(absolute)} (missing)`;
  }
  const layout =
    withPartitions && size > 0
      ? await partitionsOf(absolute)
      : { table: null, partitions: [] as Partition[] };
  return {
    device: absolute,
    description,
    size,
    isSystem: false,
    isRemovable: false,
    mountpoints: [],
    partitionTable: layout.table,
    partitions: layout.partitions,
    attachedAs: null,
  };
}

export async function listDrives(images: string[], withPartitions = true): Promise<Drive[]> {
  const [disks, imageDrives] = await Promise.all([
    listDisks(withPartitions).catch(() => [] as Drive[]),
    Promise.all(images.map((image) => imageDrive(image, withPartitions))),
  ]);
  return [...disks, ...imageDrives];
}
