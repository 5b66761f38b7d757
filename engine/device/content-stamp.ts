// A stamp of a source's content state: equal stamps taken at two moments mean nothing wrote the source in
// between, so an interrupted backup's units may be reused. An image file is stamped by its inode and its
// modification and change times (the change time cannot be set back by anyone); a block device by the kernel's
// count of writes and discards to its whole disk (and to what it is built on), the disk's sequence number and
// the boot. When that cannot be told — the source is in use, written just now, a write is in flight — the stamp
// is null and a resumed backup reads everything again.
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { deviceUses, loopDevicesBacking } from './busy.ts';
import { kernelName, parentDisk } from './sysfs.ts';

/**
 * A file changed less than this long before it is stamped may change again within the same timestamp tick (or
 * through an mmap whose dirty pages get their time only at writeback): its stamp is not trusted.
 */
export const QUIET_MS = 60_000;

export interface StampOptions {
  /** The time now in ms (tests move it). */
  now?: number;
}

async function fileStamp(path: string, now: number): Promise<string | null> {
  const info = await stat(path, { bigint: true }).catch(() => null);
  if (!info?.isFile()) return null;
  const lastChangeMs = Math.max(Number(info.mtimeNs / 1_000_000n), Number(info.ctimeNs / 1_000_000n));
  if (now - lastChangeMs < QUIET_MS) return null;
  return `file:${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
}

/** Write and discard counters of a disk and, recursively, of the devices it is built on; null while busy. */
async function diskCounters(disk: string, seen: Set<string>, now: number): Promise<string[] | null> {
  if (seen.has(disk)) return [];
  seen.add(disk);
  const base = join('/sys/class/block', disk);
  const fields = (await readFile(join(base, 'stat'), 'utf8').catch(() => '')).trim().split(/\s+/);
  if (fields.length < 11) return null;
  // Fields: read ios, merges, sectors, ticks; write ios, merges, sectors, ticks; in flight; io ticks; queue
  // time; then discard ios, merges, sectors, ticks (kernels since 4.18).
  if (fields[8] !== '0') return null;
  const sequence = (await readFile(join(base, 'diskseq'), 'utf8').catch(() => '')).trim();
  const parts = [`${disk}:${sequence}:${fields[4]}:${fields[6]}:${fields[11] ?? ''}:${fields[13] ?? ''}`];
  const backing = (await readFile(join(base, 'loop', 'backing_file'), 'utf8').catch(() => '')).trim();
  if (backing) {
    // Writes to a loop device's file that bypass the device are seen only on the file.
    const file = await fileStamp(backing, now);
    if (!file) return null;
    parts.push(file);
  }
  for (const slave of (await readdir(join(base, 'slaves')).catch(() => [] as string[])).sort()) {
    const below = await diskCounters(await parentDisk(slave), seen, now);
    if (!below) return null;
    parts.push(...below);
  }
  return parts;
}

/** The content stamp of the source at `path` (an image file or a block device), or null when unknown. */
export async function contentStamp(path: string, options: StampOptions = {}): Promise<string | null> {
  const now = options.now ?? Date.now();
  const real = await realpath(path).catch(() => null);
  if (!real) return null;
  const info = await stat(real).catch(() => null);
  if (info?.isFile()) {
    // Attached as a loop device, the image may be written through it at any time.
    if ((await loopDevicesBacking(real)).length > 0) return null;
    return fileStamp(real, now);
  }
  if (!info?.isBlockDevice()) return null;
  if ((await deviceUses(real)).length > 0) return null;
  const boot = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
  if (!boot) return null;
  const counters = await diskCounters(await parentDisk(await kernelName(real)), new Set(), now);
  return counters ? `block:${boot}:${counters.join('|')}` : null;
}
