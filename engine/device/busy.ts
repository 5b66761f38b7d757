// Whether a block device (or any partition on it) is in use by the running system: mounted, a swap area,
// held by device-mapper/md, or open for writing by another process. Restore targets are checked with this so
// Diskline never writes under a live file system; backup sources so it never copies one silently torn.
import { readdir, readFile, readlink, realpath, stat } from 'node:fs/promises';
import { kernelName, sysfsDevNumber, sysfsHolders, sysfsPartitions } from './sysfs.ts';

/** Loop devices whose backing file is `imagePath` (e.g. ["/dev/loop3"]). */
export async function loopDevicesBacking(imagePath: string): Promise<string[]> {
  const target = await realpath(imagePath).catch(() => imagePath);
  const names = (await readdir('/sys/class/block').catch(() => [] as string[])).filter((n) =>
    /^loop\d+$/.test(n),
  );
  const found: string[] = [];
  for (const name of names) {
    const backing = await readFile(`/sys/class/block/${name}/loop/backing_file`, 'utf8').catch(() => null);
    if (backing?.trim() === target) found.push(`/dev/${name}`);
  }
  return found;
}

/** Why a device is busy, one line per use; empty when it is free to write. */
export async function deviceUses(devicePath: string): Promise<string[]> {
  const name = await kernelName(devicePath);
  const names = [name, ...(await sysfsPartitions(name))];
  const uses: string[] = [];
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const swaps = await readFile('/proc/swaps', 'utf8').catch(() => '');
  for (const each of names) {
    const devNumber = await sysfsDevNumber(each);
    for (const line of mountinfo.split('\n')) {
      // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw" — field 3 is major:minor, then the
      // mount point; after " - " come the type and the source.
      const fields = line.split(' ');
      const source = line.split(' - ')[1]?.split(' ')[1];
      if ((devNumber && fields[2] === devNumber) || source === `/dev/${each}`) {
        uses.push(`/dev/${each} is mounted on ${fields[4]}`);
      }
    }
    for (const line of swaps.split('\n').slice(1)) {
      const source = line.split(/\s+/)[0];
      if (source === `/dev/${each}`) uses.push(`/dev/${each} is an active swap area`);
    }
    for (const holder of await sysfsHolders(each)) uses.push(`/dev/${each} is held by ${holder}`);
  }
  return [...new Set(uses)];
}

/** Whether open-file flags (octal, from /proc/PID/fdinfo) allow writing: O_WRONLY or O_RDWR. */
function flagsWrite(fdinfo: string): boolean {
  const flags = /^flags:\s*([0-7]+)/m.exec(fdinfo)?.[1];
  return flags !== undefined && (Number.parseInt(flags, 8) & 3) !== 0;
}

/**
 * Processes other than this one holding the block device (or a partition of it) open for writing, one line
 * each ("pid 812 (qemu-system-x86) has /dev/sdb open for writing"); what fuser would find, from /proc.
 */
export async function writersOf(devicePath: string): Promise<string[]> {
  const name = await kernelName(devicePath);
  const devNumbers = new Map<string, string>();
  for (const each of [name, ...(await sysfsPartitions(name))]) {
    const devNumber = await sysfsDevNumber(each);
    if (devNumber) devNumbers.set(devNumber, `/dev/${each}`);
  }
  const found: string[] = [];
  const pids = (await readdir('/proc').catch(() => [] as string[])).filter(
    (entry) => /^\d+$/.test(entry) && Number(entry) !== process.pid,
  );
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (!target.startsWith('/dev/')) continue;
      const info = await stat(`/proc/${pid}/fd/${fd}`).catch(() => null);
      if (!info?.isBlockDevice()) continue;
      const device = devNumbers.get(
        `${Math.floor(info.rdev / 256) & 0xfff}:${(info.rdev & 0xff) | ((info.rdev >> 12) & 0xfff00)}`,
      );
      if (!device) continue;
      if (!flagsWrite(await readFile(`/proc/${pid}/fdinfo/${fd}`, 'utf8').catch(() => ''))) continue;
      const command = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '?')).trim();
      found.push(`pid ${pid} (${command}) has ${device} open for writing`);
    }
  }
  return [...new Set(found)];
}
