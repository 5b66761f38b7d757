// Protection per disk, as the Drives view and `diskline protection` show it: one state for the disk from its
// volumes' (protection.ts) and from whether the tap serves it, what the next restart changes, and whether
// protect / unprotect would change anything. Protecting a whole disk protects each of its partitions in use —
// those the running system writes, whose backups would otherwise be torn; a partition nobody uses is left
// alone (a linear target over it would keep it from being mounted directly). All refusals are checked for
// every partition before the first change, so a refusal changes nothing.
import { stat } from 'node:fs/promises';
import type { DiskProtection, VolumeProtection } from '../../protocol/protection.ts';
import { kernelName, parentDisk, sysfsPartitions } from '../device/sysfs.ts';
import {
  checkProtect,
  defaultSystem,
  ProtectionRefused,
  type ProtectionStatus,
  type ProtectRequest,
  protect,
  protectionStatus,
  unprotect,
} from './protection.ts';

function volumeProtection({ listed, ...volume }: ProtectionStatus): VolumeProtection {
  return { ...volume, protectedAtBoot: listed };
}

function list(devices: ProtectionStatus[]): string {
  return devices.map((volume) => volume.device).join(', ');
}

/** The protection of a disk or image file; `attachedAs` is the tap's loop device when the tap serves it. */
export async function diskProtection(
  disk: string,
  attachedAs: string | null,
  system = defaultSystem(),
): Promise<DiskProtection> {
  const info = await stat(disk).catch(() => null);
  const tapOnly = (detail: string): DiskProtection => ({
    disk,
    kind: 'tap',
    detail,
    afterRestart: null,
    canProtect: false,
    canUnprotect: false,
    volumes: [],
  });
  if (attachedAs && info)
    return {
      ...tapOnly(
        `served through the tap as ${attachedAs}: mount ${attachedAs}, not the disk, and backups stay consistent while it is written`,
      ),
      volumes: info.isBlockDevice() ? (await protectionStatus(disk, system)).map(volumeProtection) : [],
    };
  if (info?.isFile())
    return tapOnly(
      'an image file: attach it through the tap (Protect while in use) before using it, and backups stay consistent while it is written',
    );
  if (!info?.isBlockDevice())
    return {
      ...tapOnly(`${disk} is not there`),
      kind: 'cannot',
    };
  const volumes = await protectionStatus(disk, system);
  const inUse = volumes.filter((volume) => volume.inUse);
  const afterRestart = volumes.flatMap((volume) => volume.afterRestart ?? []).join('; ') || null;
  const unprotected = inUse.filter((volume) => volume.kind === 'unprotected');
  const cannot = inUse.filter((volume) => volume.kind === 'cannot');
  const pending = volumes.filter((volume) => volume.kind === 'needs-restart');
  const mapped = inUse.filter((volume) => volume.kind === 'device-mapper');
  const state = (): Pick<DiskProtection, 'kind' | 'detail'> => {
    if (cannot.length)
      return {
        kind: 'cannot',
        detail: `${list(cannot)} ${cannot.length > 1 ? 'are' : 'is'} in use and not a partition (no PARTUUID): device-mapper cannot protect it at boot; unmount it and attach the disk through the tap (Protect while in use)`,
      };
    if (unprotected.length)
      return {
        kind: 'unprotected',
        detail: `${list(unprotected)} ${unprotected.length > 1 ? 'are' : 'is'} in use and not protected: a backup now could be torn; protect the disk, then restart once`,
      };
    if (pending.length)
      return {
        kind: 'needs-restart',
        detail: `protected from the next restart on (${list(pending)}): until then a backup of what is in use could be torn`,
      };
    if (mapped.length)
      return {
        kind: 'device-mapper',
        detail: `protected: backups take device-mapper snapshots of ${list(mapped)} with no restart`,
      };
    return {
      kind: 'tap',
      detail:
        'not in use: attach it through the tap (Protect while in use) before mounting it, and backups stay consistent while it is written',
    };
  };
  return {
    disk,
    ...state(),
    afterRestart,
    canProtect: unprotected.length > 0,
    canUnprotect: volumes.some((volume) => volume.listed),
    volumes: volumes.map(volumeProtection),
  };
}

/** The whole disk `device` is on (itself for a disk), e.g. /dev/sda for /dev/sda2. */
export async function diskOf(device: string): Promise<string> {
  return `/dev/${await parentDisk(await kernelName(device))}`;
}

/** A whole disk with partitions (protect and unprotect then act on each), or null for anything else. */
async function partitionedDisk(device: string): Promise<string[] | null> {
  const info = await stat(device).catch(() => null);
  if (!info?.isBlockDevice()) return null;
  const partitions = await sysfsPartitions(await kernelName(device));
  return partitions.length ? partitions : null;
}

function requireConfirmation(verb: 'protecting' | 'unprotecting', device: string, confirm?: string) {
  if (confirm !== device)
    throw new ProtectionRefused(
      `${verb} ${device} changes how this machine boots: confirm by naming it (--confirm ${device}); nothing was changed`,
    );
}

/**
 * Protects a partition (protection.ts protect), or each partition in use of a whole disk; refused with nothing
 * changed when nothing on the disk needs it. Returns the whole disk the device is on.
 */
export async function protectDisk(request: ProtectRequest, system = defaultSystem()): Promise<string> {
  if (!(await partitionedDisk(request.device))) {
    await protect(request, system);
    return diskOf(request.device);
  }
  requireConfirmation('protecting', request.device, request.confirm);
  const volumes = await protectionStatus(request.device, system);
  const targets = volumes.filter((volume) => volume.inUse && volume.kind === 'unprotected');
  if (!targets.length) {
    const inUse = volumes.filter((volume) => volume.inUse);
    throw new ProtectionRefused(
      inUse.length === 0
        ? `nothing on ${request.device} is in use: attach it through the tap before mounting it instead; nothing was changed`
        : `nothing on ${request.device} needs protecting (${inUse.map((volume) => `${volume.device}: ${volume.detail}`).join('; ')}); nothing was changed`,
    );
  }
  // Each partition stands confirmed by the disk's name; every refusal is met before the first change.
  const requests = targets.map((volume) => ({ ...request, device: volume.device, confirm: volume.device }));
  for (const each of requests) await checkProtect(each, system);
  for (const each of requests) await protect(each, system);
  return request.device;
}

/** Removes a partition, or every partition of a whole disk, from the boot setup. Returns the whole disk. */
export async function unprotectDisk(
  request: { device: string; confirm: string | undefined },
  system = defaultSystem(),
): Promise<string> {
  if (!(await partitionedDisk(request.device))) {
    await unprotect(request, system);
    return diskOf(request.device);
  }
  requireConfirmation('unprotecting', request.device, request.confirm);
  const listed = (await protectionStatus(request.device, system)).filter((volume) => volume.listed);
  if (!listed.length) throw new ProtectionRefused(`${request.device} is not protected; nothing was changed`);
  for (const volume of listed) await unprotect({ device: volume.device, confirm: volume.device }, system);
  return request.device;
}
