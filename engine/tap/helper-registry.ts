// Where tap helpers live: one directory (root-only) holds, per served source, the helper's socket and the
// directory its FUSE file is mounted on, both named by a hash of the source path. A restarted engine finds the
// helper of a source there and adopts it; a helper that was killed leaves a socket nobody answers, which
// clearHelperRemains() cleans up (its loop device is detached once unmounted, its FUSE mount lazily unmounted).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { socketPath as engineSocketPath } from '../config/socket-path.ts';
import { HelperChannel } from './helper-channel.ts';
import { loopDevicesBackedBy } from './system-state.ts';

const run = promisify(execFile);

/** The helpers' directory: DISKLINE_TAP_DIR, else "taps" beside the daemon's socket (/run/diskline/taps). */
export function tapRuntimeDir(): string {
  return process.env.DISKLINE_TAP_DIR || join(dirname(engineSocketPath()), 'taps');
}

export interface HelperPlace {
  socketPath: string;
  mountDir: string;
  fuseFile: string;
}

export function helperPlace(source: string, runtimeDir = tapRuntimeDir()): HelperPlace {
  const id = createHash('sha256').update(source).digest('hex').slice(0, 24);
  const mountDir = join(runtimeDir, `${id}.mnt`);
  return { socketPath: join(runtimeDir, `${id}.sock`), mountDir, fuseFile: join(mountDir, 'volume') };
}

/** Makes the helpers' directory (0700: only root reaches the sockets) and the mount directory of `place`. */
export async function prepareHelperPlace(place: HelperPlace): Promise<void> {
  await mkdir(dirname(place.socketPath), { recursive: true, mode: 0o700 });
  await mkdir(place.mountDir, { recursive: true, mode: 0o700 });
}

/**
 * The helper serving `place`: a connected channel, 'none' when no helper was ever started there (or it was
 * stopped), 'dead' when its socket is left but nothing answers (the helper was killed).
 */
export async function findHelper(place: HelperPlace): Promise<HelperChannel | 'none' | 'dead'> {
  const exists = await stat(place.socketPath).then(
    () => true,
    () => false,
  );
  if (!exists) return 'none';
  return HelperChannel.connect(place.socketPath).catch(() => 'dead' as const);
}

/**
 * After a helper was killed: detaches the loop devices over its dead FUSE file (the kernel finishes the detach
 * when their file systems are unmounted), unmounts the dead FUSE mount and removes the socket. Returns what
 * was done, one line each.
 */
export async function clearHelperRemains(place: HelperPlace): Promise<string[]> {
  const done: string[] = [];
  for (const device of await loopDevicesBackedBy(place.fuseFile)) {
    await run('losetup', ['--detach', device]).catch(() => undefined);
    done.push(`detached ${device}, left over a dead tap helper at ${place.mountDir}`);
  }
  await run('umount', ['-l', place.mountDir]).catch(() => undefined);
  await rm(place.socketPath, { force: true });
  return done;
}

/**
 * Ends every helper under `runtimeDir` (what a test started): detaches their loop devices, stops the live ones
 * and clears what dead ones left. Mounted file systems on them must be unmounted first.
 */
export async function stopHelpersUnder(runtimeDir: string): Promise<void> {
  const names = await readdir(runtimeDir).catch(() => [] as string[]);
  for (const name of names.filter((entry) => entry.endsWith('.sock'))) {
    const base = join(runtimeDir, name.slice(0, -'.sock'.length));
    const place = {
      socketPath: `${base}.sock`,
      mountDir: `${base}.mnt`,
      fuseFile: join(`${base}.mnt`, 'volume'),
    };
    for (const device of await loopDevicesBackedBy(place.fuseFile))
      await run('losetup', ['--detach', device]).catch(() => undefined);
    const found = await findHelper(place);
    if (found === 'dead') await clearHelperRemains(place);
    else if (found !== 'none') await found.stop().catch(() => found.close());
  }
}
