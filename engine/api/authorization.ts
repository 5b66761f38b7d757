// Who may do what through the API. The engine is root and most of its callers are not: every method declares
// what it touches and who may call it (methodRules; a method without a rule does not compile, and a test calls
// each one as a stranger). Root, the engine's own uid and its own transports (in-process, the token-holding
// WebSocket of `diskline serve`) may do anything; a user merely allowed on the socket acts only on what it
// owns: files, directories and repositories it owns (checked on the held descriptor, engine/handles), block
// devices a policy shares with one of its groups, and the jobs, plans, mounts and volumes it started. Events
// about an object reach only the connections that may see it.
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { MethodName } from '../../protocol/messages.ts';
import { type HeldPath, HeldPathError, holdPath } from '../handles/held-path.ts';
import type { Connection, Handlers } from './dispatcher.ts';
import { ApiError } from './errors.ts';

const run = promisify(execFile);

/** What a method reads, changes or creates. */
export type Touched =
  | 'engine'
  | 'drives'
  | 'repository'
  | 'point'
  | 'source'
  | 'target'
  | 'directory'
  | 'container'
  | 'job'
  | 'plan'
  | 'volume'
  | 'mount'
  | 'schedules'
  /** How the machine boots (the device-mapper protection's boot setup). */
  | 'boot';

export interface MethodRule {
  touches: readonly Touched[];
  /**
   * 'anyone' on the socket (answers hold only what the caller may see); 'owner': root, or a caller that owns
   * every object touched; 'root': root and the engine's own uid or process only.
   */
  who: 'anyone' | 'owner' | 'root';
}

export const methodRules: { readonly [M in MethodName]: MethodRule } = {
  'engine.status': { touches: ['engine'], who: 'anyone' },
  'drives.list': { touches: ['drives'], who: 'anyone' },
  'points.list': { touches: ['repository', 'point'], who: 'owner' },
  'repo.init': { touches: ['repository', 'directory'], who: 'owner' },
  // Object stores are reached with the engine's credentials and network: root's to name.
  'repo.checkS3': { touches: ['repository'], who: 'root' },
  'backup.start': { touches: ['source', 'repository', 'container', 'job'], who: 'owner' },
  'restore.preview': { touches: ['repository', 'point', 'target'], who: 'owner' },
  'restore.start': { touches: ['repository', 'point', 'target', 'job'], who: 'owner' },
  'verify.start': { touches: ['repository', 'job'], who: 'owner' },
  'prune.start': { touches: ['repository', 'job'], who: 'owner' },
  'copy.start': { touches: ['repository', 'point', 'job'], who: 'owner' },
  'drill.start': { touches: ['repository', 'point', 'job'], who: 'owner' },
  'mount.start': { touches: ['repository', 'point', 'directory', 'mount'], who: 'owner' },
  'mount.stop': { touches: ['mount'], who: 'owner' },
  'volumes.attach': { touches: ['source', 'volume'], who: 'owner' },
  'volumes.detach': { touches: ['volume'], who: 'owner' },
  'jobs.list': { touches: ['job'], who: 'anyone' },
  'jobs.cancel': { touches: ['job'], who: 'owner' },
  'plans.list': { touches: ['plan'], who: 'anyone' },
  'plans.save': { touches: ['plan', 'source', 'repository', 'container'], who: 'owner' },
  'plans.delete': { touches: ['plan'], who: 'owner' },
  'plans.runNow': { touches: ['plan', 'job'], who: 'owner' },
  'schedules.setPaused': { touches: ['schedules'], who: 'root' },
  'blockmap.subscribe': { touches: ['job'], who: 'owner' },
  // Reading protection is reading drives; changing it changes how the machine boots: root's alone.
  'protection.list': { touches: ['drives'], who: 'anyone' },
  'protection.protect': { touches: ['drives', 'boot'], who: 'root' },
  'protection.unprotect': { touches: ['drives', 'boot'], who: 'root' },
};

/** Who is calling, as far as authorization goes. */
export interface Caller {
  uid: number;
  /** Primary and supplementary groups (for devices a policy shares with a group). */
  gids: readonly number[];
  /** Root, the engine's own uid, or the engine's own transports: may do anything. */
  privileged: boolean;
}

/** The engine acting for itself (schedules of root's plans, re-attaching at start). */
export const ENGINE_CALLER: Caller = { uid: 0, gids: [0], privileged: true };

export function callerOf(connection: Connection): Caller {
  const ownUid = process.getuid?.() ?? 0;
  if (connection.transport !== 'unix' || connection.uid === null) {
    return { uid: ownUid, gids: [process.getgid?.() ?? 0], privileged: true };
  }
  return {
    uid: connection.uid,
    gids: connection.gids ?? [],
    privileged: connection.uid === 0 || connection.uid === ownUid,
  };
}

/** A plan runs later as the one who saved it: root's plans as the engine, a user's plans as that user. */
export function callerForOwner(owner: number | null | undefined, gids: readonly number[] = []): Caller {
  return owner === null || owner === undefined ? ENGINE_CALLER : { uid: owner, gids, privileged: false };
}

/** The owner recorded on what a caller creates (jobs, plans, mounts, volumes): null for root's. */
export function ownerFor(caller: Caller): number | null {
  return caller.privileged ? null : caller.uid;
}

/** Whether a caller may see or act on an object with this owner (null or absent: root's). */
export function mayAccess(caller: Caller, owner: number | null | undefined): boolean {
  return caller.privileged || (owner !== null && owner !== undefined && owner === caller.uid);
}

export function requireAccess(caller: Caller, owner: number | null | undefined, what: string): void {
  if (mayAccess(caller, owner)) return;
  throw new ApiError(
    'forbidden',
    `${what} belongs to ${owner === null || owner === undefined ? 'root' : `uid ${owner}`}; you (uid ${caller.uid}) may act only on your own.`,
  );
}

export function requireRule(method: MethodName, caller: Caller): void {
  const rule = methodRules[method] as MethodRule | undefined;
  // Fails closed: a method nobody wrote a rule for is root's.
  if ((!rule || rule.who === 'root') && !caller.privileged) {
    throw new ApiError('forbidden', `${method} is for root only; ask an administrator.`);
  }
}

/** The handlers, each behind its method's rule; object-level checks happen inside them. */
export function authorizeHandlers(handlers: Handlers): Handlers {
  const guarded: Record<string, (params: unknown, connection: Connection) => unknown> = {};
  for (const method of Object.keys(handlers) as MethodName[]) {
    const handler = handlers[method] as (params: unknown, connection: Connection) => unknown;
    guarded[method] = (params, connection) => {
      requireRule(method, callerOf(connection));
      return handler(params, connection);
    };
  }
  return guarded as unknown as Handlers;
}

/** Opens a caller-named path (links followed only when root's or the caller's), as an API error when it fails. */
export function holdForCaller(caller: Caller, path: string): HeldPath {
  try {
    return holdPath(path, caller.uid);
  } catch (error) {
    if (error instanceof HeldPathError) {
      throw new ApiError(
        error.code === 'ENOENT' ? 'not-found' : error.code === 'ELOOP' ? 'forbidden' : 'refused',
        error.message,
      );
    }
    throw error;
  }
}

/** Like holdForCaller, but a path that does not exist gives null. */
export function holdForCallerIfPresent(caller: Caller, path: string): HeldPath | null {
  try {
    return holdForCaller(caller, path);
  } catch (error) {
    if (error instanceof ApiError && error.code === 'not-found') return null;
    throw error;
  }
}

/** A group named in the policy: a gid written as a number, or a name the system resolves. */
async function groupId(name: string): Promise<number | null> {
  if (/^\d+$/.test(name)) return Number(name);
  try {
    const { stdout } = await run('getent', ['group', name]);
    const gid = Number(stdout.split(':')[2]);
    return Number.isInteger(gid) ? gid : null;
  } catch {
    return null;
  }
}

/** Whether the policy (device path → group name or gid, root's config) shares this held block device with the caller. */
export async function deviceSharedWith(
  caller: Caller,
  device: HeldPath,
  policy: Readonly<Record<string, string>>,
): Promise<boolean> {
  for (const [path, group] of Object.entries(policy)) {
    const info = await stat(path).catch(() => null);
    if (!info?.isBlockDevice() || info.rdev !== device.stats.rdev) continue;
    const gid = await groupId(group);
    if (gid !== null && caller.gids.includes(gid)) return true;
  }
  return false;
}

/**
 * Checks a held disk or image the caller names (a backup source, an existing restore target, a volume): it
 * must be a regular file or a block device — never a FIFO, a socket or a character device — and, for a
 * non-root caller, a file it owns or a block device shared with one of its groups. Closes `held` on refusal.
 */
export async function requireCallersDisk(
  caller: Caller,
  held: HeldPath,
  purpose: string,
  devicePolicy: Readonly<Record<string, string>>,
): Promise<void> {
  const { stats } = held;
  let refusal: ApiError | null = null;
  if (!stats.isFile() && !stats.isBlockDevice()) {
    refusal = new ApiError(
      'refused',
      `${held.name} is neither a disk nor an image file; you cannot use it ${purpose}.`,
    );
  } else if (!caller.privileged) {
    if (stats.isBlockDevice()) {
      if (!(await deviceSharedWith(caller, held, devicePolicy))) {
        refusal = new ApiError(
          'forbidden',
          `${held.name} is a block device, which only root may use ${purpose} unless the engine's device policy (deviceGroups in config.json) shares it with a group of yours.`,
        );
      }
    } else if (stats.uid !== caller.uid) {
      refusal = new ApiError(
        'forbidden',
        `${held.name} is not a file of yours (uid ${caller.uid}); you cannot use it ${purpose}.`,
      );
    }
  }
  if (refusal) {
    held.close();
    throw refusal;
  }
}

/** Checks a held directory: a directory, and for a non-root caller one it owns. Closes `held` on refusal. */
export function requireCallersDirectory(caller: Caller, held: HeldPath, purpose: string): void {
  if (held.stats.isDirectory() && (caller.privileged || held.stats.uid === caller.uid)) return;
  held.close();
  throw new ApiError(
    'forbidden',
    held.stats.isDirectory() || !caller.privileged
      ? `${held.name} is not a directory of yours (uid ${caller.uid}); name one you own for ${purpose}.`
      : `${held.name} is not a directory; name one for ${purpose}.`,
  );
}
