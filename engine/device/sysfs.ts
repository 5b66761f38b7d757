// What the kernel says about a block device, read from /sys/class/block: its size, sector size, the
// partitions on it and who holds it (device-mapper, md). Works for whole disks and for partitions.
import { access, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const sysBlock = '/sys/class/block';

async function readSysNumber(path: string): Promise<number | null> {
  try {
    const value = Number((await readFile(path, 'utf8')).trim());
    return Number.isFinite(value) ? value : null;
  } catch {
    return null;
  }
}

/**
 * The kernel name of a device node (e.g. /dev/disk/by-id/… → "sda1"), following symlinks; a node whose name is
 * not the kernel's (a /dev/mapper node made without udev) is found by its device number.
 */
export async function kernelName(devicePath: string): Promise<string> {
  const resolved = await realpath(devicePath);
  const name = basename(resolved);
  if (
    await access(join(sysBlock, name)).then(
      () => true,
      () => false,
    )
  )
    return name;
  const info = await stat(resolved);
  if (!info.isBlockDevice()) return name;
  const major = (Math.floor(info.rdev / 256) & 0xfff) | (Math.floor(info.rdev / 2 ** 32) & ~0xfff);
  const minor = (info.rdev & 0xff) | (Math.floor(info.rdev / 4096) & ~0xff);
  return basename(await realpath(`/sys/dev/block/${major}:${minor}`).catch(() => name));
}

/** Size in bytes from /sys/class/block/NAME/size (always counted in 512-byte units), or null. */
export async function sysfsSize(name: string): Promise<number | null> {
  const sectors = await readSysNumber(join(sysBlock, name, 'size'));
  return sectors === null ? null : sectors * 512;
}

/** The whole disk a partition belongs to ("sda1" → "sda"); a whole disk is its own. */
export async function parentDisk(name: string): Promise<string> {
  const partitionFlag = await readSysNumber(join(sysBlock, name, 'partition'));
  if (partitionFlag === null) return name;
  return basename(dirname(await realpath(join(sysBlock, name))));
}

/** Logical sector size of the device (a partition takes its disk's), defaulting to 512. */
export async function sysfsLogicalSectorSize(name: string): Promise<number> {
  const disk = await parentDisk(name);
  return (await readSysNumber(join(sysBlock, disk, 'queue', 'logical_block_size'))) ?? 512;
}

/** Kernel names of the partitions on a whole disk (empty for a partition or a disk without any). */
export async function sysfsPartitions(name: string): Promise<string[]> {
  const entries = await readdir(join(sysBlock, name)).catch(() => [] as string[]);
  const partitions: string[] = [];
  for (const entry of entries) {
    if ((await readSysNumber(join(sysBlock, name, entry, 'partition'))) !== null) partitions.push(entry);
  }
  return partitions.sort();
}

/** Devices stacked on this one (device-mapper, md RAID, bcache): non-empty means the kernel uses it. */
export async function sysfsHolders(name: string): Promise<string[]> {
  return readdir(join(sysBlock, name, 'holders')).catch(() => [] as string[]);
}

/** "major:minor" of a device, as /proc/self/mountinfo names it. */
export async function sysfsDevNumber(name: string): Promise<string | null> {
  try {
    return (await readFile(join(sysBlock, name, 'dev'), 'utf8')).trim();
  } catch {
    return null;
  }
}
