// The writer lock (short metadata steps: commits, prune bookkeeping) and backup registrations (so prune knows
// which backups are running). Both record pid, host and time, so a holder that died is recognised as stale.
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from '../backend/types.ts';

export const WRITER_LOCK = 'locks/writer';
const STALE_AFTER_MS = 10 * 60 * 1000;
/** A lock or registration is a line of JSON. */
const LOCK_MAX_BYTES = 64 * 1024;

export interface Holder {
  pid: number;
  host: string;
  /** ISO time */
  time: string;
  purpose: string;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A holder is gone when it ran on this host and its process no longer exists. */
export function holderIsGone(holder: Holder): boolean {
  return holder.host === hostname() && !pidAlive(holder.pid);
}

function me(purpose: string): Holder {
  return { pid: process.pid, host: hostname(), time: new Date().toISOString(), purpose };
}

/** Thrown when the writer lock stays held by a live holder for longer than the wait. */
export class LockedError extends Error {}

/** Runs `body` holding the writer lock; waits up to `waitMs` for a live holder, removes a stale one. */
export async function withWriterLock<T>(
  backend: Backend,
  purpose: string,
  body: () => Promise<T>,
  waitMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + waitMs;
  const mine = Buffer.from(JSON.stringify(me(purpose)));
  for (let delay = 5; ; delay = Math.min(delay * 2, 250)) {
    try {
      await backend.create(WRITER_LOCK, mine);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    let holder: Holder | null = null;
    try {
      holder = JSON.parse((await backend.get(WRITER_LOCK, LOCK_MAX_BYTES)).toString('utf8')) as Holder;
    } catch {
      // Vanished between create and get, or a half-written lock of a crashed holder: retry / treat as stale.
      holder = null;
    }
    const stale =
      holder === null
        ? (await backend.size(WRITER_LOCK)) === 0
        : holderIsGone(holder) || Date.now() - Date.parse(holder.time) > STALE_AFTER_MS;
    if (stale) {
      await backend.delete(WRITER_LOCK);
      continue;
    }
    if (Date.now() > deadline) {
      throw new LockedError(
        `repository ${backend.location} is locked by process ${holder?.pid} on ${holder?.host} (${holder?.purpose}, since ${holder?.time}); ` +
          'wait for it to finish, or remove locks/writer if that process is gone',
      );
    }
    await sleep(delay);
  }
  try {
    return await body();
  } finally {
    await backend.delete(WRITER_LOCK);
  }
}

/** What a prune deleting segments writes as the writer lock's purpose: backups starting meanwhile wait for it. */
export const SEGMENT_DELETION = 'prune: unreferenced segments';

/**
 * Returns once `locks/writer` is not held for `purpose` by a live holder: absent, held for something else, or
 * stale (its holder died, and with it what it was doing). Polls as withWriterLock's waiters do; never takes it.
 */
export async function waitWhileHeldFor(backend: Backend, purpose: string): Promise<void> {
  for (let delay = 5; ; delay = Math.min(delay * 2, 250)) {
    let holder: Holder;
    try {
      holder = JSON.parse((await backend.get(WRITER_LOCK, LOCK_MAX_BYTES)).toString('utf8')) as Holder;
    } catch (error) {
      // Gone, or a half-written lock of a crashed holder; a failure to ask the store is not an answer.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || error instanceof SyntaxError) return;
      throw error;
    }
    if (
      holder.purpose !== purpose ||
      holderIsGone(holder) ||
      Date.now() - Date.parse(holder.time) > STALE_AFTER_MS
    )
      return;
    await sleep(delay);
  }
}

export interface BackupRegistration extends Holder {
  pointId: string;
  source: string;
  /**
   * When the registration was first stored, by the storage's clock (ms): what prune compares with a prune
   * record's time, so that machines whose clocks disagree still agree on which came first. Absent in
   * registrations of older versions (their `time` is used).
   */
  registeredAt?: number;
}

/**
 * A registration not refreshed for this long belongs to a backup that died on another machine (one on this
 * machine is recognised by its pid at once). A backup refreshes its own at every pack it writes once a
 * twentieth of this has passed, and checks it is still there before each commit.
 */
export const REGISTRATION_EXPIRES_MS = 30 * 60 * 1000;
export const REGISTRATION_REFRESH_MS = REGISTRATION_EXPIRES_MS / 20;

export function registrationName(pointId: string): string {
  return `locks/backup-${pointId}`;
}

/** Registers a backup; returns when the storage says it was stored (its clock). */
export async function registerBackup(backend: Backend, pointId: string, source: string): Promise<number> {
  const name = registrationName(pointId);
  await backend.put(name, Buffer.from(JSON.stringify({ ...me('backup'), pointId, source })));
  const registeredAt = (await backend.modifiedAt(name)) ?? Date.now();
  await refreshBackup(backend, pointId, source, registeredAt);
  return registeredAt;
}

/** Writes the backup's own registration again (only its writer ever writes it): its modified time is now. */
export async function refreshBackup(
  backend: Backend,
  pointId: string,
  source: string,
  registeredAt: number,
): Promise<void> {
  const registration: BackupRegistration = { ...me('backup'), pointId, source, registeredAt };
  await backend.put(registrationName(pointId), Buffer.from(JSON.stringify(registration)));
}

/** Whether the registration is still there: a prune that found it expired removed it. */
export async function stillRegistered(backend: Backend, pointId: string): Promise<boolean> {
  return (await backend.size(registrationName(pointId))) !== null;
}

export async function unregisterBackup(backend: Backend, pointId: string): Promise<void> {
  await backend.delete(registrationName(pointId));
}

/**
 * Backups registered and still running. Stale registrations are removed: of dead processes on this machine, and
 * of any machine's when not refreshed for REGISTRATION_EXPIRES_MS (by the storage's clock against this one's).
 */
export async function runningBackups(backend: Backend): Promise<BackupRegistration[]> {
  const running: BackupRegistration[] = [];
  for (const name of await backend.list('locks/')) {
    if (!name.startsWith('locks/backup-')) continue;
    let registration: BackupRegistration;
    let modified: number | null;
    try {
      registration = JSON.parse(
        (await backend.get(name, LOCK_MAX_BYTES)).toString('utf8'),
      ) as BackupRegistration;
      modified = await backend.modifiedAt(name);
    } catch {
      continue;
    }
    const expired = modified !== null && Date.now() - modified > REGISTRATION_EXPIRES_MS;
    if (holderIsGone(registration) || expired) await backend.delete(name);
    else running.push(registration);
  }
  return running;
}

/** When a backup registered, by the storage's clock where recorded. */
export function registrationTime(registration: BackupRegistration): number {
  return registration.registeredAt ?? Date.parse(registration.time);
}
