// Talks to the kernel's device-mapper through dmsetup: what a mapped device's table and status are, and the
// steps of a table swap (create, suspend, load, resume, remove). dmsetup rather than the ioctls from Node: a
// swap is a handful of calls, each a few milliseconds beside the suspend's own flush (docs/consistent-points.md
// has the figures), and libdevmapper keeps /dev/mapper in step without udev.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Names Diskline gives the devices it creates: the protected name plus a suffix; nothing a shell or dmsetup reads specially. */
const DM_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,120}$/;

export class DeviceMapperError extends Error {}

export function checkDmName(name: string): string {
  if (!DM_NAME.test(name)) throw new DeviceMapperError(`'${name}' is not a device-mapper name Diskline uses`);
  return name;
}

async function dmsetup(args: string[], input?: string): Promise<string> {
  try {
    if (input === undefined) return (await run('dmsetup', args, { env: dmEnv() })).stdout;
    return await new Promise<string>((resolve, reject) => {
      const child = execFile('dmsetup', args, { env: dmEnv() }, (error, stdout, stderr) =>
        error ? reject(Object.assign(error, { stderr })) : resolve(stdout),
      );
      child.stdin?.end(input);
    });
  } catch (error) {
    const stderr = String((error as { stderr?: string }).stderr ?? '').trim();
    throw new DeviceMapperError(`dmsetup ${args.join(' ')} failed: ${stderr || (error as Error).message}`);
  }
}

/** Without udev (an initramfs, a minimal system) libdevmapper makes its own /dev/mapper nodes. */
function dmEnv(): NodeJS.ProcessEnv {
  return { ...process.env, DM_DISABLE_UDEV: process.env.DM_DISABLE_UDEV ?? '1' };
}

/** The live table of a mapped device, as dmsetup prints it (one target a line). */
export async function tableOf(name: string): Promise<string> {
  return dmsetup(['table', checkDmName(name)]);
}

/** The status line(s) of a mapped device. */
export async function statusOf(name: string): Promise<string> {
  return dmsetup(['status', checkDmName(name)]);
}

export async function createDevice(name: string, table: string): Promise<void> {
  await dmsetup(['create', checkDmName(name)], table);
}

/** Suspends the device: in-flight I/O completes, new I/O waits; a file system on it is frozen (the point). */
export async function suspendDevice(name: string): Promise<void> {
  await dmsetup(['suspend', checkDmName(name)]);
}

/** Loads `table` as the device's inactive table; resume makes it live. */
export async function loadTable(name: string, table: string): Promise<void> {
  await dmsetup(['load', checkDmName(name)], table);
}

export async function resumeDevice(name: string): Promise<void> {
  await dmsetup(['resume', checkDmName(name)]);
}

/**
 * Makes the loaded inactive table live with one resume: the kernel's resume of a device with an inactive table
 * suspends it (in-flight I/O completes, a file system on it is frozen), swaps the tables and resumes, all inside
 * one ioctl — writers wait for the kernel, not for a process started between a suspend and a resume (under
 * emulation that alone took over a second). Returns how long the call took, in milliseconds.
 */
export async function swapInLoadedTable(name: string): Promise<number> {
  const started = performance.now();
  await dmsetup(['resume', checkDmName(name)]);
  return performance.now() - started;
}

export async function removeDevice(name: string): Promise<void> {
  await dmsetup(['remove', checkDmName(name)]);
}

export async function deviceExists(name: string): Promise<boolean> {
  try {
    await dmsetup(['info', checkDmName(name)]);
    return true;
  } catch {
    return false;
  }
}

/** The mapped device behind a block device node (by /sys/class/block/dm-N/dm/name), or null when it is not one. */
export async function dmNameOf(kernelName: string): Promise<string | null> {
  try {
    return (await readFile(`/sys/class/block/${kernelName}/dm/name`, 'utf8')).trim();
  } catch {
    return null;
  }
}

/** "major:minor" of a block device, from sysfs. */
export async function deviceNumber(kernelName: string): Promise<string> {
  return (await readFile(`/sys/class/block/${kernelName}/dev`, 'utf8')).trim();
}

/** A snapshot target's fill from its status line: "<used>/<total> <metadata>" sectors, or 'Invalid'/'Overflow'. */
export interface SnapshotFill {
  usedSectors: number;
  totalSectors: number;
  /** The kernel dropped the snapshot (overflow or an I/O error on the store): its reads now fail. */
  invalid: boolean;
}

export function parseSnapshotStatus(status: string): SnapshotFill {
  const fields = status.trim().split(/\s+/);
  // "0 16384 snapshot 24/8192 16" — start, length, target, then the target's own fields.
  const own = fields.slice(3);
  if (own[0] === 'Invalid' || own[0] === 'Overflow' || own[0] === 'Merge' || own.length === 0)
    return { usedSectors: 0, totalSectors: 0, invalid: true };
  const match = own[0]!.match(/^(\d+)\/(\d+)$/);
  if (!match) throw new DeviceMapperError(`unexpected snapshot status '${status.trim()}'`);
  return { usedSectors: Number(match[1]), totalSectors: Number(match[2]), invalid: false };
}
