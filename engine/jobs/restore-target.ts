// What a restore would overwrite, and the confirmation token bound to that very target. The token is an
// HMAC over the target's identity (path, size, and the device's serial or the file's inode and mtime) plus
// the point, so a token issued for one disk never confirms another — nor the same path after the device
// behind it changed (another stick plugged in, the image replaced).
import { execFile } from 'node:child_process';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, realpath } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Drive } from '../../protocol/model.ts';
import { loopDevicesBacking } from '../device/busy.ts';
import type { HeldPath } from '../handles/held-path.ts';
import type { FitPlan } from '../partition/fit-layout.ts';

const run = promisify(execFile);

export interface TargetIdentity {
  path: string;
  kind: 'image' | 'device';
  exists: boolean;
  size: number;
  /** Device serial (or WWN) for a block device; inode:mtime for a file; '' for a file not yet created. */
  tag: string;
}

export interface RestorePreview {
  target: string;
  targetKind: 'image' | 'device';
  targetSize: number;
  targetDescription: string;
  overwrites: string[];
  typedConfirmation: string | null;
  confirmToken: string;
  refusal: string | null;
  plan?: FitPlan | null;
}

async function deviceSerial(path: string): Promise<string> {
  try {
    const { stdout } = await run('lsblk', ['-dno', 'SERIAL,WWN,MODEL', path]);
    return stdout.trim().replace(/\s+/g, ' ');
  } catch {
    return '';
  }
}

/** A block device's size from sysfs, by its device number (the held device's own, never a name). */
async function blockDeviceSize(rdev: number): Promise<number> {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((Math.floor(rdev / 4096) & 0xfff00) >>> 0);
  const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
  return Number(sectors.trim()) * 512;
}

/**
 * The identity of a restore target: `held` is the target as the engine opened and checked it (null: it does
 * not exist yet, the restore creates it); `target` is its name, for messages and the confirmation.
 */
export async function targetIdentity(target: string, held: HeldPath | null): Promise<TargetIdentity> {
  const path = resolve(target);
  if (!held) return { path, kind: 'image', exists: false, size: 0, tag: '' };
  const info = held.stats;
  if (info.isBlockDevice()) {
    const size = await blockDeviceSize(info.rdev);
    return { path, kind: 'device', exists: true, size, tag: `${await deviceSerial(path)}|rdev ${info.rdev}` };
  }
  if (info.isFile()) {
    return { path, kind: 'image', exists: true, size: info.size, tag: `${info.ino}:${info.mtimeMs}` };
  }
  return { path, kind: 'image', exists: true, size: 0, tag: 'not-a-file' };
}

/** Signs and checks confirmation tokens with a key that lives as long as the engine process. */
export class ConfirmTokens {
  #key = randomBytes(32);

  issue(identity: TargetIdentity, repo: string, point: string): string {
    return createHmac('sha256', this.#key)
      .update(JSON.stringify([repo, point, identity.path, identity.kind, identity.size, identity.tag]))
      .digest('base64url');
  }

  matches(token: string, identity: TargetIdentity, repo: string, point: string): boolean {
    const expected = Buffer.from(this.issue(identity, repo, point));
    const given = Buffer.from(token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

async function mountedUnder(device: string): Promise<string[]> {
  const mounts = await readFile('/proc/self/mounts', 'utf8').catch(() => '');
  const real = await realpath(device).catch(() => device);
  return mounts
    .split('\n')
    .map((line) => line.split(' '))
    .filter(
      ([source]) =>
        source &&
        (source === real || (source.startsWith(real) && /^\d|^p\d/.test(source.slice(real.length)))),
    )
    .map(([source, dir]) => `${source} on ${dir}`);
}

export interface PreviewFacts {
  identity: TargetIdentity;
  /** The point's source size: the target must hold it. */
  pointSize: number;
  pointLabel: string;
  drive: Drive | undefined;
  /** Paths an active backup reads or another restore writes: never a target. */
  busyPaths: Set<string>;
  /** The loop device serving the target through the tap, when it is an attached volume. */
  attachedAs?: string | null;
  /** The layout the restore writes onto this target; its refusal replaces the plain size check. */
  plan?: FitPlan | null;
}

/** Describes the restore and decides whether it is refused; the caller adds the token. */
export async function describeRestore(facts: PreviewFacts): Promise<Omit<RestorePreview, 'confirmToken'>> {
  const { identity, pointSize, pointLabel, drive } = facts;
  const overwrites: string[] = [];
  let refusal: string | null = null;
  let description: string;
  if (identity.kind === 'device') {
    description = `${drive?.description ?? 'Disk'} ${identity.path} (${identity.size} bytes)`;
    overwrites.push(`the whole disk ${identity.path}: ${identity.size} bytes`);
    for (const partition of drive?.partitions ?? []) {
      overwrites.push(
        `partition ${partition.index} (${partition.filesystem ?? partition.type}, ${partition.usedBytes} bytes used)`,
      );
    }
    const mounted = await mountedUnder(identity.path);
    if (drive?.isSystem)
      refusal = `${identity.path} holds the running system; restore it from a rescue system instead.`;
    else if (mounted.length) {
      refusal = `${identity.path} is in use (${mounted.join(', ')}); unmount it, then ask for a new preview.`;
    } else if (facts.plan?.refusal) {
      refusal = `${identity.path} (${identity.size} bytes) cannot take ${pointLabel}: ${facts.plan.refusal.reason}.`;
    } else if (!facts.plan && identity.size < pointSize) {
      refusal = `${identity.path} is ${identity.size} bytes, smaller than ${pointLabel} (${pointSize} bytes); choose a disk at least that big.`;
    }
  } else if (!identity.exists) {
    description = `New image file ${identity.path}`;
    overwrites.push('nothing: the image file will be created');
  } else if (identity.tag === 'not-a-file') {
    description = identity.path;
    refusal = `${identity.path} is neither a block device nor a regular file; choose a disk or an image file.`;
  } else {
    description = `Image file ${identity.path} (${identity.size} bytes)`;
    overwrites.push(`the image file ${identity.path}: all ${identity.size} bytes`);
    const loops = await loopDevicesBacking(identity.path);
    if (loops.length) {
      refusal = `${identity.path} is attached as ${loops.join(', ')} (it may be mounted); detach it, then ask for a new preview.`;
    }
  }
  if (!refusal && identity.kind === 'image' && facts.plan?.refusal) {
    refusal = `${identity.path} cannot take ${pointLabel} at ${facts.plan.targetSize} bytes: ${facts.plan.refusal.reason}.`;
  }
  if (!refusal && facts.attachedAs) {
    refusal = `${identity.path} is attached as ${facts.attachedAs} and may be in use through it; detach it (volumes.detach), then ask for a new preview.`;
  }
  if (!refusal && facts.busyPaths.has(identity.path)) {
    refusal = `${identity.path} is being read or written by a running job; wait for it to finish or cancel it.`;
  }
  return {
    target: identity.path,
    targetKind: identity.kind,
    targetSize: identity.size,
    targetDescription: description,
    overwrites,
    typedConfirmation: identity.kind === 'device' ? basename(identity.path) : null,
    refusal,
    plan: facts.plan ?? null,
  };
}
