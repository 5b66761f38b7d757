// The writer lock (short metadata steps: commits, prune bookkeeping) and backup registrations (so prune knows
// which backups are running). Both record pid, host and time, so a holder that died is recognised as stale. Ages
// are measured by the storage's clock on both ends (when a name was written, against a probe written now), so
// machines whose clocks disagree with the store still agree on what is stale.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Backend } from '../backend/types.ts';
import { RepositoryError } from './errors.ts';

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
  /** Tells this holder's lock from another's taken after it was judged stale. */
  token?: string;
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

function me(purpose: string, token?: string): Holder {
  return { pid: process.pid, host: hostname(), time: new Date().toISOString(), purpose, token };
}

/**
 * Now, by the storage's clock: the time it records for a name written now (a probe, removed at once). Null when
 * the storage records no times.
 */
export async function storageNow(backend: Backend): Promise<number | null> {
  const probe = `locks/clock-${randomBytes(8).toString('hex')}`;
  await backend.put(probe, Buffer.alloc(0));
  try {
    return await backend.modifiedAt(probe);
  } finally {
    await backend.delete(probe);
  }
}

/**
 * Whether a name last written `holderTime` (by its writer's clock) is older than `limitMs`. Asked of the storage's
 * clock only when the local one says so, so waiting for a live holder costs no extra requests.
 */
async function olderThan(
  backend: Backend,
  name: string,
  holderTime: string,
  limitMs: number,
): Promise<boolean> {
  if (Date.now() - Date.parse(holderTime) <= limitMs) return false;
  const written = await backend.modifiedAt(name);
  if (written === null) return true;
  const now = await storageNow(backend);
  return now === null || now - written > limitMs;
}

/** Thrown when the writer lock stays held by a live holder for longer than the wait. */
export class LockedError extends Error {}

/** Thrown by a long step whose writer lock was judged stale and taken by another while it ran. */
export class LockLostError extends RepositoryError {}

/**
 * What a body holding the writer lock calls between the items of a long step (deleting thousands of segments, say):
 * renews the lock when a fifth of its life has passed, so no other machine judges it stale, and throws
 * LockLostError when it is no longer this holder's (or could have been judged stale: renewed too late).
 */
export interface WriterLease {
  keep(): Promise<void>;
}

class Lease implements WriterLease {
  readonly #backend: Backend;
  readonly #purpose: string;
  readonly #token: string;
  readonly #now: () => number;
  #renewedAt: number;
  constructor(backend: Backend, purpose: string, token: string, now: () => number) {
    this.#backend = backend;
    this.#purpose = purpose;
    this.#token = token;
    this.#now = now;
    this.#renewedAt = now();
  }

  async keep(): Promise<void> {
    const since = this.#now() - this.#renewedAt;
    if (since < STALE_AFTER_MS / 5) return;
    const lost = () =>
      new LockLostError(
        `repository ${this.#backend.location}: the writer lock for "${this.#purpose}" was held ${Math.round(since / 1000)} s without renewal and may have been taken by another process; stopped, nothing more is changed`,
      );
    // Past half its life another machine may have judged it stale already: renewing then could overwrite theirs.
    if (since >= STALE_AFTER_MS / 2) throw lost();
    let holder: Holder;
    try {
      holder = JSON.parse((await this.#backend.get(WRITER_LOCK, LOCK_MAX_BYTES)).toString('utf8')) as Holder;
    } catch {
      throw lost();
    }
    if (holder.token !== this.#token) throw lost();
    this.#renewedAt = this.#now();
    await this.#backend.put(WRITER_LOCK, Buffer.from(JSON.stringify(me(this.#purpose, this.#token))));
  }
}

/**
 * Runs `body` holding the writer lock; waits up to `waitMs` for a live holder, removes a stale one. `now` is the
 * clock the lease measures its renewals by.
 */
export async function withWriterLock<T>(
  backend: Backend,
  purpose: string,
  body: (lease: WriterLease) => Promise<T>,
  waitMs = 60_000,
  now: () => number = Date.now,
): Promise<T> {
  const deadline = Date.now() + waitMs;
  const token = randomBytes(12).toString('hex');
  const mine = Buffer.from(JSON.stringify(me(purpose, token)));
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
        : holderIsGone(holder) || (await olderThan(backend, WRITER_LOCK, holder.time, STALE_AFTER_MS));
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
    return await body(new Lease(backend, purpose, token, now));
  } finally {
    await releaseIfMine(backend, token);
  }
}

/** Removes the writer lock unless another holder took it meanwhile (after judging this one stale). */
async function releaseIfMine(backend: Backend, token: string): Promise<void> {
  let holder: Holder | null = null;
  try {
    holder = JSON.parse((await backend.get(WRITER_LOCK, LOCK_MAX_BYTES)).toString('utf8')) as Holder;
  } catch {
    holder = null;
  }
  if (holder === null || holder.token === token) await backend.delete(WRITER_LOCK);
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
      (await olderThan(backend, WRITER_LOCK, holder.time, STALE_AFTER_MS))
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

/** Thrown when a backup's registration is gone, or was not renewed in time to be sure it is not. */
export class RegistrationLostError extends RepositoryError {}

/**
 * Writes the backup's own registration again (only its writer ever writes it): its modified time is now. Never
 * brings back one a prune removed as expired: the prune went on as if this backup had ended. `sinceConfirmedMs`
 * is how long ago the last refresh was stored: past half the expiry, a prune may be removing it right now, so
 * the backup stops instead of racing it.
 */
export async function refreshBackup(
  backend: Backend,
  pointId: string,
  source: string,
  registeredAt: number,
  sinceConfirmedMs = 0,
): Promise<void> {
  const lost = (why: string) =>
    new RegistrationLostError(
      `backup ${pointId} lost its registration in ${backend.location} (${why}, so a prune no longer waits for it); run the backup again`,
    );
  if (sinceConfirmedMs >= REGISTRATION_EXPIRES_MS / 2)
    throw lost(`it was not renewed for ${Math.round(sinceConfirmedMs / 60_000)} minutes`);
  if ((await backend.size(registrationName(pointId))) === null) throw lost('a prune found it expired');
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
 * of any machine's when not refreshed for REGISTRATION_EXPIRES_MS by the storage's clock.
 */
export async function runningBackups(backend: Backend): Promise<BackupRegistration[]> {
  return liveRegistrations<BackupRegistration>(backend, 'locks/backup-');
}

/** The registrations under `prefix` still alive; removes those of dead processes here and expired ones. */
async function liveRegistrations<T extends Holder>(backend: Backend, prefix: string): Promise<T[]> {
  const live: T[] = [];
  let now: number | null | undefined;
  for (const name of await backend.list('locks/')) {
    if (!name.startsWith(prefix)) continue;
    let registration: T;
    let modified: number | null;
    try {
      registration = JSON.parse((await backend.get(name, LOCK_MAX_BYTES)).toString('utf8')) as T;
      modified = await backend.modifiedAt(name);
    } catch {
      continue;
    }
    // The local clock first (no request while registrations are fresh), then the storage's to be sure.
    let expired = modified !== null && Date.now() - modified > REGISTRATION_EXPIRES_MS;
    if (expired) {
      now ??= await storageNow(backend);
      expired = now !== null && now - (modified as number) > REGISTRATION_EXPIRES_MS;
    }
    if (holderIsGone(registration) || expired) await backend.delete(name);
    else live.push(registration);
  }
  return live;
}

export interface ReaderRegistration extends Holder {
  /** The point being read. */
  pointId: string;
}

/**
 * A point being read (a restore, a mount, an instant restore, a copy, a drill): prune keeps it while the reader
 * lives, so what the reader needs is never deleted under it. Renewed on a timer (a mount may sit idle for days);
 * `close` ends it. A renewal never brings back a registration a prune found expired.
 */
export class PointReading {
  readonly #backend: Backend;
  readonly #name: string;
  readonly #body: Buffer;
  readonly #timer: { cancel(): void };
  #renewing: Promise<void> = Promise.resolve();

  private constructor(backend: Backend, name: string, body: Buffer, every: Every) {
    this.#backend = backend;
    this.#name = name;
    this.#body = body;
    this.#timer = every(REGISTRATION_REFRESH_MS, () => {
      this.#renewing = this.#renew().catch(() => {
        // A store that does not answer now may answer at the next renewal; the reader's own reads say more.
      });
    });
  }

  static async start(backend: Backend, pointId: string, every: Every = everyInterval): Promise<PointReading> {
    const name = `locks/read-${randomBytes(16).toString('hex')}`;
    const registration: ReaderRegistration = { ...me('read'), pointId };
    const body = Buffer.from(JSON.stringify(registration));
    await backend.put(name, body);
    return new PointReading(backend, name, body, every);
  }

  async #renew(): Promise<void> {
    if ((await this.#backend.size(this.#name)) === null) return;
    await this.#backend.put(this.#name, this.#body);
  }

  async close(): Promise<void> {
    this.#timer.cancel();
    await this.#renewing;
    await this.#backend.delete(this.#name);
  }
}

/** Runs `body` every `ms` until cancelled, without keeping the process alive. */
export type Every = (ms: number, body: () => void) => { cancel(): void };

const everyInterval: Every = (ms, body) => {
  const timer = setInterval(body, ms);
  timer.unref();
  return { cancel: () => clearInterval(timer) };
};

/** Points some live reader is reading. Expired registrations (readers that died elsewhere) are removed. */
export async function pointsBeingRead(backend: Backend): Promise<Set<string>> {
  return new Set((await liveRegistrations<ReaderRegistration>(backend, 'locks/read-')).map((r) => r.pointId));
}

/** Runs `body` with `pointId` registered as being read. */
export async function whileReading<T>(backend: Backend, pointId: string, body: () => Promise<T>): Promise<T> {
  const reading = await PointReading.start(backend, pointId);
  try {
    return await body();
  } finally {
    await reading.close();
  }
}

/** When a backup registered, by the storage's clock where recorded. */
export function registrationTime(registration: BackupRegistration): number {
  return registration.registeredAt ?? Date.parse(registration.time);
}
