// What the kernel says about devices the tap works with: where a block device is mounted (from
// /proc/self/mountinfo by major:minor), whether /dev/fuse and loop devices are usable, and loop attach/detach
// through losetup (with direct I/O when the kernel accepts it for the backing file).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir as readdirAsync, readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Mount points of the block device at `devicePath` (empty when not mounted). */
export async function mountPointsOf(devicePath: string): Promise<string[]> {
  const info = await stat(devicePath);
  if (!info.isBlockDevice()) return [];
  const major = Math.floor(info.rdev / 256) & 0xfff;
  const minor = (info.rdev & 0xff) | ((info.rdev >> 12) & 0xfff00);
  const devNumber = `${major}:${minor}`;
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const points: string[] = [];
  for (const line of mountinfo.split('\n')) {
    // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw": field 3 is major:minor, 5 the mount point.
    const fields = line.split(' ');
    if (fields[2] === devNumber && fields[4]) points.push(fields[4].replace(/\\040/g, ' '));
  }
  return points;
}

/** Mount points of the loop device and of each of its partitions. */
export async function mountPointsOfVolume(loopDevice: string): Promise<string[]> {
  const name = basename(loopDevice);
  const partitions = (await readdirAsync(`/sys/class/block/${name}`).catch(() => [] as string[])).filter(
    (entry) => entry.startsWith(`${name}p`),
  );
  const points: string[] = [];
  for (const device of [loopDevice, ...partitions.map((p) => `/dev/${p}`)]) {
    points.push(...(await mountPointsOf(device).catch(() => [] as string[])));
  }
  return points;
}

/**
 * Partition nodes of a loop device attached with --partscan, giving the kernel a moment to scan, and making the
 * nodes with mknod where no udev does (containers); empty without a partition table.
 */
export async function loopPartitions(device: string): Promise<string[]> {
  const name = basename(device);
  await run('partx', ['--update', device]).catch(() => undefined);
  for (let attempt = 0; attempt < 20; attempt++) {
    const entries = (await readdirAsync(`/sys/class/block/${name}`).catch(() => [] as string[]))
      .filter((entry) => entry.startsWith(`${name}p`))
      .sort((a, b) => Number(a.slice(name.length + 1)) - Number(b.slice(name.length + 1)));
    if (entries.length) {
      const nodes: string[] = [];
      for (const entry of entries) {
        const node = `/dev/${entry}`;
        const exists = await run('test', ['-b', node]).then(
          () => true,
          () => false,
        );
        if (!exists) {
          const dev = (await run('cat', [`/sys/class/block/${entry}/dev`])).stdout.trim();
          const [major, minor] = dev.split(':');
          await run('mknod', [node, 'b', major ?? '0', minor ?? '0']).catch(() => undefined);
        }
        nodes.push(node);
      }
      return nodes;
    }
    await sleep(50);
  }
  return [];
}

/** Null when this process can run a tap (root, /dev/fuse, loop devices); otherwise exactly what is missing. */
export function tapUnavailableReason(): string | null {
  if (process.getuid?.() !== 0)
    return 'attaching a volume needs root (FUSE mount with allow_other and loop devices)';
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse: the fuse kernel module is not loaded (modprobe fuse)';
  if (!existsSync('/dev/loop-control'))
    return 'no /dev/loop-control: the loop driver is not available (modprobe loop)';
  return null;
}

export interface LoopAttachment {
  device: string;
  /** Whether the loop device does direct I/O on its backing file. */
  directIo: boolean;
  /** Why direct I/O is off, when it was asked for and refused. */
  note?: string;
}

/** Attaches `file` as a loop device; asks for direct I/O and falls back (with a note) if refused. */
export async function attachLoopDevice(
  file: string,
  options: { directIo: boolean; readOnly: boolean; partscan: boolean },
): Promise<LoopAttachment> {
  const args = ['--find', '--show'];
  if (options.readOnly) args.push('--read-only');
  if (options.partscan) args.push('--partscan');
  const { stdout } = await run('losetup', [...args, file]);
  const device = stdout.trim();
  if (!options.directIo) return { device, directIo: false };
  try {
    await run('losetup', ['--direct-io=on', device]);
    return { device, directIo: true };
  } catch (error) {
    const reason = ((error as { stderr?: string }).stderr ?? (error as Error).message).trim();
    return {
      device,
      directIo: false,
      note: `direct I/O refused for ${device} (${reason}); using buffered I/O`,
    };
  }
}

/** Flushes and detaches a loop device, waiting until the kernel has released its backing file. */
export async function detachLoopDevice(device: string): Promise<void> {
  await run('blockdev', ['--flushbufs', device]).catch(() => undefined);
  await run('losetup', ['--detach', device]);
  const name = device.replace('/dev/', '');
  for (let attempt = 0; attempt < 200; attempt++) {
    // The loop device lets go of its backing file asynchronously after LOOP_CLR_FD.
    const backing = await readFile(`/sys/block/${name}/loop/backing_file`, 'utf8').catch(() => '');
    if (!backing) return;
    await sleep(25);
  }
  throw new Error(`${device} still holds its backing file 5 s after losetup --detach`);
}

/** Loop devices whose backing file is `file`. */
export async function loopDevicesBackedBy(file: string): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  const found: string[] = [];
  for (const name of await readdir('/sys/class/block').catch(() => [] as string[])) {
    if (!/^loop\d+$/.test(name)) continue;
    const backing = (
      await readFile(`/sys/class/block/${name}/loop/backing_file`, 'utf8').catch(() => '')
    ).trim();
    if (backing && backing.replace(/ \(deleted\)$/, '') === file) found.push(`/dev/${name}`);
  }
  return found;
}

/**
 * Cleans up after hosts that died (kill -9, crash): a tap FUSE mount whose server is gone answers ENOTCONN; the
 * loop devices over it are detached and the mount lazily unmounted. Live taps (answering) are left alone.
 * Returns what was cleaned, one line each. Run at daemon start, before re-attaching volumes.
 */
export async function recoverStaleTaps(): Promise<string[]> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  const cleaned: string[] = [];
  for (const line of mountinfo.split('\n')) {
    const [before, after] = line.split(' - ');
    if (!before || !after?.startsWith('fuse.diskline ')) continue;
    const mountDir = (before.split(' ')[4] ?? '').replace(/\\040/g, ' ');
    const fuseFile = `${mountDir}/volume`;
    const alive = await stat(fuseFile).then(
      () => true,
      (error: NodeJS.ErrnoException) => error.code !== 'ENOTCONN' && error.code !== 'ECONNABORTED',
    );
    if (alive) continue;
    for (const device of await loopDevicesBackedBy(fuseFile)) {
      await run('losetup', ['--detach', device]).catch(() => undefined);
      cleaned.push(`detached ${device}, left over a dead tap at ${mountDir}`);
    }
    await run('umount', ['-l', mountDir]).catch(() => undefined);
    cleaned.push(`unmounted the dead tap at ${mountDir}`);
  }
  return cleaned;
}
