// Protection of a disk the machine runs from: which way each volume can have a consistent point, and the
// one-time boot setup that makes a plain partition a mapped device. Protecting a partition records it (by
// PARTUUID, which survives renumbering) in /etc/diskline/protected.conf and installs the initramfs-tools hook
// and local-top script that stack a linear target over it at boot (boot/); from the next boot on the device-
// mapper provider can snapshot it. Unprotecting removes the line, and the hook with the last one. Every change
// needs the caller to confirm by naming the disk; a refusal changes nothing.
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import {
  access,
  copyFile,
  mkdir,
  readdir,
  readFile,
  realpath,
  rename,
  rm,
  rmdir,
  stat,
  writeFile,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { RefusalError } from '../../protocol/failure.ts';
import { deviceUses } from '../device/busy.ts';
import { kernelName, parentDisk, sysfsHolders, sysfsPartitions } from '../device/sysfs.ts';
import { deviceNumberOf } from './cow-store.ts';
import { dmNameOf } from './dmsetup.ts';

const run = promisify(execFile);

export type ProtectionKind = 'device-mapper' | 'needs-restart' | 'unprotected' | 'cannot';

export interface ProtectionStatus {
  device: string;
  kind: ProtectionKind;
  /** What the state means for the user. */
  detail: string;
  /** Mounted, swapped on, held or otherwise used by the running system. */
  inUse: boolean;
  /** Recorded in the boot setup's list (protected from the next restart on, or still). */
  listed: boolean;
  /** What the next restart changes for this volume; null when nothing. */
  afterRestart: string | null;
}

/** A protect/unprotect that was refused: nothing was changed (exit 3). */
export class ProtectionRefused extends RefusalError {}

export interface ProtectionSystem {
  /** Where /etc lives (tests point it at a scratch folder). */
  root: string;
  /** Rebuilds the initramfs after the hook or the list changed; null: the caller does it. */
  updateInitramfs: (() => Promise<void>) | null;
}

export function defaultSystem(): ProtectionSystem {
  return {
    root: process.env.DISKLINE_SYSTEM_ROOT ?? '/',
    updateInitramfs: async () => {
      await run('update-initramfs', ['-u']);
    },
  };
}

const bootScripts = new URL('./boot/', import.meta.url);
const paths = (system: ProtectionSystem) => ({
  list: join(system.root, 'etc/diskline/protected.conf'),
  hook: join(system.root, 'etc/initramfs-tools/hooks/diskline'),
  localTop: join(system.root, 'etc/initramfs-tools/scripts/local-top/diskline'),
  hooksDir: join(system.root, 'etc/initramfs-tools'),
});

interface ProtectedEntry {
  partUuid: string;
  name: string;
}

async function readList(system: ProtectionSystem): Promise<ProtectedEntry[]> {
  const text = await readFile(paths(system).list, 'utf8').catch(() => '');
  const entries: ProtectedEntry[] = [];
  for (const line of text.split('\n')) {
    const match = line.match(/^PARTUUID=([0-9A-Za-z-]+) ([A-Za-z0-9_.+-]+)$/);
    if (match) entries.push({ partUuid: match[1]!, name: match[2]! });
  }
  return entries;
}

async function writeList(system: ProtectionSystem, entries: ProtectedEntry[]): Promise<void> {
  const { list } = paths(system);
  await mkdir(join(list, '..'), { recursive: true });
  const text =
    '# Partitions Diskline stacks a linear device-mapper target over at boot (diskline protect / unprotect).\n' +
    entries.map((entry) => `PARTUUID=${entry.partUuid} ${entry.name}\n`).join('');
  // Written beside and renamed: a crash leaves the old list or the new one, never half.
  await writeFile(`${list}.new`, text, { mode: 0o644 });
  await rename(`${list}.new`, list);
}

async function partUuidOf(device: string): Promise<string | null> {
  try {
    const { stdout } = await run('blkid', ['-p', '-s', 'PART_ENTRY_UUID', '-o', 'value', device]);
    return stdout.trim() || null;
  } catch {
    return null;
  }
}

/** The whole disks holding `path`'s file system (a repository must not be on the disk it backs up). */
async function disksHolding(path: string): Promise<string[]> {
  // A repository not made yet will be made in the nearest folder that exists.
  let place = path;
  let info = await stat(place).catch(() => null);
  while (!info && dirname(place) !== place) {
    place = dirname(place);
    info = await stat(place).catch(() => null);
  }
  if (!info) return [];
  const number = deviceNumberOf(info.dev);
  const start = await realpath(`/sys/dev/block/${number}`).catch(() => null);
  if (!start) return [];
  // Down through device-mapper and md to the partitions and disks beneath.
  const disks = new Set<string>();
  const visit = async (name: string) => {
    const slaves = await readdir(`/sys/class/block/${name}/slaves`).catch(() => [] as string[]);
    if (!slaves.length) disks.add(await parentDisk(name));
    for (const slave of slaves) await visit(slave);
  };
  await visit(start.split('/').pop()!);
  return [...disks];
}

export interface ProtectRequest {
  device: string;
  /** Must equal `device`: the user named the disk to be changed. */
  confirm: string | undefined;
  /** Repositories this machine backs up to: their disks cannot be protected (nor backed up into themselves). */
  repositories: string[];
  /** The copy-on-write store later backups will use, when it is a file or partition: it may not be on the volume. */
  storePath?: string | undefined;
}

async function checkTarget(
  device: string,
  repositories: string[],
): Promise<{ kernel: string; disk: string }> {
  const info = await stat(device).catch(() => null);
  if (!info) throw new ProtectionRefused(`${device} is not there: no such disk; nothing was changed`);
  if (!info.isBlockDevice())
    throw new ProtectionRefused(`${device} is not a block device; nothing was changed`);
  const kernel = await kernelName(device);
  const disk = await parentDisk(kernel);
  for (const repository of repositories) {
    if (repository.includes('://') || repository.startsWith('s3:')) continue;
    const holding = await disksHolding(repository);
    if (holding.includes(disk))
      throw new ProtectionRefused(
        `${device} is on ${`/dev/${disk}`}, the disk that holds the repository ${repository}: a disk cannot be protected into its own repository; nothing was changed`,
      );
  }
  return { kernel, disk };
}

export async function protectionStatus(
  device: string,
  system = defaultSystem(),
): Promise<ProtectionStatus[]> {
  const info = await stat(device).catch(() => null);
  if (!info?.isBlockDevice())
    return [
      {
        device,
        kind: 'cannot',
        detail: `${device} is not there`,
        inUse: false,
        listed: false,
        afterRestart: null,
      },
    ];
  const kernel = await kernelName(device);
  const partitions = await sysfsPartitions(kernel);
  const names = partitions.length ? partitions : [kernel];
  const list = await readList(system);
  const statuses: ProtectionStatus[] = [];
  for (const name of names) {
    const path = `/dev/${name}`;
    const uses = await deviceUses(path).catch(() => [] as string[]);
    const inUse = uses.length > 0;
    if (await dmNameOf(name)) {
      statuses.push({
        device: path,
        kind: 'device-mapper',
        detail: 'a mapped device: snapshots need no restart',
        inUse,
        listed: false,
        afterRestart: null,
      });
      continue;
    }
    const partUuid = await partUuidOf(path);
    const listed = partUuid !== null && list.some((entry) => entry.partUuid === partUuid);
    const holders = await sysfsHolders(name);
    const holderNames = await Promise.all(holders.map((holder) => dmNameOf(holder)));
    const stacked = holderNames.find((holder) => holder?.startsWith('diskline-'));
    if (stacked) {
      statuses.push({
        device: path,
        kind: 'device-mapper',
        detail: `protected: mounted through /dev/mapper/${stacked}`,
        inUse,
        listed,
        // Unprotected since this boot: the target stays until the restart that mounts the partition directly.
        afterRestart: listed
          ? null
          : `after a restart ${path} is mounted directly again, and no longer protected`,
      });
      continue;
    }
    if (listed) {
      statuses.push({
        device: path,
        kind: 'needs-restart',
        detail: 'protected from the next restart on: the boot setup will stack a linear target over it',
        inUse,
        listed,
        afterRestart: `after a restart ${path} is mounted through a linear device-mapper target, and backups take consistent points of it`,
      });
      continue;
    }
    if (!partUuid) {
      statuses.push({
        device: path,
        kind: 'cannot',
        detail: 'not a partition with a PARTUUID (GPT or MBR): attach it through the tap instead',
        inUse,
        listed,
        afterRestart: null,
      });
      continue;
    }
    statuses.push({
      device: path,
      kind: 'unprotected',
      detail: inUse
        ? `in use (${uses.join('; ')}): protect it, then restart`
        : 'not in use: attach it through the tap, or protect it and restart',
      inUse,
      listed,
      afterRestart: null,
    });
  }
  return statuses;
}

/**
 * Every refusal protecting `request.device` can meet, checked without changing anything: the partition's kernel
 * name and PARTUUID when it needs the boot setup, a null PARTUUID for a device that is already mapped.
 */
export async function checkProtect(
  request: ProtectRequest,
  system = defaultSystem(),
): Promise<{ kernel: string; partUuid: string | null }> {
  const { kernel } = await checkTarget(request.device, request.repositories);
  if (request.confirm !== request.device)
    throw new ProtectionRefused(
      `protecting ${request.device} changes how this machine boots: confirm by naming it (--confirm ${request.device}); nothing was changed`,
    );
  if (await dmNameOf(kernel)) return { kernel, partUuid: null };
  const partUuid = await partUuidOf(request.device);
  if (!partUuid)
    throw new ProtectionRefused(
      `${request.device} has no PARTUUID (it is not a GPT or MBR partition): protect its partitions, or attach it through the tap; nothing was changed`,
    );
  if (request.storePath && (await storeOnVolume(request.storePath, kernel)))
    throw new ProtectionRefused(
      `the store ${request.storePath} is on ${request.device}: under device-mapper its blocks cannot be excluded from the snapshot; choose a store on another volume, in memory, or a spare partition; nothing was changed`,
    );
  await access(paths(system).hooksDir, constants.F_OK).catch(() => {
    throw new ProtectionRefused(
      'this system has no initramfs-tools (/etc/initramfs-tools): the boot setup cannot be installed; nothing was changed',
    );
  });
  return { kernel, partUuid };
}

export async function protect(request: ProtectRequest, system = defaultSystem()): Promise<ProtectionStatus> {
  const { kernel, partUuid } = await checkProtect(request, system);
  if (!partUuid)
    return {
      device: request.device,
      kind: 'device-mapper',
      detail: 'already a mapped device: snapshots need no restart and no boot setup',
      inUse: await inUse(request.device),
      listed: false,
      afterRestart: null,
    };
  const list = await readList(system);
  if (!list.some((entry) => entry.partUuid === partUuid)) {
    await installBootSetup(system);
    await writeList(system, [...list, { partUuid, name: kernel.replace(/[^A-Za-z0-9_.+-]/g, '_') }]);
    await rebuildOrRestore(system, list);
  }
  return {
    device: request.device,
    kind: 'needs-restart',
    detail: 'protected from the next restart on: the boot setup will stack a linear target over it',
    inUse: await inUse(request.device),
    listed: true,
    afterRestart: `after a restart ${request.device} is mounted through a linear device-mapper target`,
  };
}

export async function unprotect(
  request: { device: string; confirm: string | undefined },
  system = defaultSystem(),
): Promise<void> {
  const info = await stat(request.device).catch(() => null);
  if (!info?.isBlockDevice())
    throw new ProtectionRefused(`${request.device} is not there: no such disk; nothing was changed`);
  if (request.confirm !== request.device)
    throw new ProtectionRefused(
      `unprotecting ${request.device} changes how this machine boots: confirm by naming it (--confirm ${request.device}); nothing was changed`,
    );
  const partUuid = await partUuidOf(request.device);
  const list = await readList(system);
  const left = list.filter((entry) => entry.partUuid !== partUuid);
  if (left.length === list.length)
    throw new ProtectionRefused(`${request.device} is not protected; nothing was changed`);
  await writeList(system, left);
  if (left.length === 0) await removeBootSetup(system);
  await rebuildOrRestore(system, list);
}

async function inUse(device: string): Promise<boolean> {
  return (await deviceUses(device).catch(() => [] as string[])).length > 0;
}

/** Whether a store (a file, a folder it would be made in, or a partition) lives on the volume `kernel`. */
async function storeOnVolume(storePath: string, kernel: string): Promise<boolean> {
  const volume = (await readFile(`/sys/class/block/${kernel}/dev`, 'utf8')).trim();
  const info =
    (await stat(storePath).catch(() => null)) ?? (await stat(dirname(storePath)).catch(() => null));
  if (!info) return false;
  if (info.isBlockDevice()) return deviceNumberOf(info.rdev) === volume;
  return deviceNumberOf(info.dev) === volume;
}

/**
 * Rebuilds the initramfs with the boot setup as now written; when that fails, puts the setup back to
 * `previous` (the list, and the hook with it) so the files never claim a protection the initramfs lacks.
 */
async function rebuildOrRestore(system: ProtectionSystem, previous: ProtectedEntry[]): Promise<void> {
  try {
    await system.updateInitramfs?.();
  } catch (error) {
    if (previous.length) {
      await installBootSetup(system);
      await writeList(system, previous);
    } else {
      await removeBootSetup(system);
    }
    throw new Error(
      `rebuilding the initramfs failed (${(error as Error).message.trim()}): the boot setup was put back as it was; nothing was changed`,
    );
  }
}

async function installBootSetup(system: ProtectionSystem): Promise<void> {
  const { hook, localTop, hooksDir } = paths(system);
  await access(hooksDir, constants.F_OK).catch(() => {
    throw new ProtectionRefused(
      'this system has no initramfs-tools (/etc/initramfs-tools): the boot setup cannot be installed; nothing was changed',
    );
  });
  for (const [source, target] of [
    ['initramfs-hook.sh', hook],
    ['stack-protected.sh', localTop],
  ] as const) {
    await mkdir(join(target, '..'), { recursive: true });
    await copyFile(new URL(source, bootScripts), `${target}.new`);
    await run('chmod', ['0755', `${target}.new`]);
    await rename(`${target}.new`, target);
  }
}

async function removeBootSetup(system: ProtectionSystem): Promise<void> {
  const { hook, localTop, list } = paths(system);
  await rm(hook, { force: true });
  await rm(localTop, { force: true });
  await rm(list, { force: true });
  // The folder only if it is empty: the engine's other files may live there one day.
  await rmdir(dirname(list)).catch(() => undefined);
}
