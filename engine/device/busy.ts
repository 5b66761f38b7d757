// Whether a block device (or any partition on it) is in use by the running system: mounted, a swap area,
// or held by device-mapper/md. Restore targets are checked with this so Diskline never writes under a
// live file system.
import { readdir, readFile, realpath } from 'node:fs/promises';
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
