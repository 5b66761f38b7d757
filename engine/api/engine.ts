// The engine as one object: state on disk, jobs, schedules, drives — and the API methods that expose them.
// Transports (unix socket, WebSocket, in-process) only move frames; everything a method does is here.
import { chownSync, readFileSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type Clock, systemClock, type TimerHandle } from '../../protocol/clock.ts';
import { failureKindOf } from '../../protocol/failure.ts';
import { type EventName, MAX_MESSAGE_BYTES } from '../../protocol/messages.ts';
import type { Job, Plan, PointSummary } from '../../protocol/model.ts';
import { checkS3Connection } from '../backend/s3/connection-check.ts';
import { isS3Location } from '../backend/s3/location.ts';
import type { StateStore } from '../config/state.ts';
import { diskProtection, protectDisk, unprotectDisk } from '../device-mapper/disk-protection.ts';
import { defaultSystem, type ProtectionSystem } from '../device-mapper/protection.ts';
import {
  createInHeldDirectory,
  type HeldPath,
  HeldPathError,
  heldInside,
  holdChild,
  holdParentOf,
  holdPathIfPresent,
  removeIfUnwritten,
  splitParent,
} from '../handles/held-path.ts';
import { EventBus } from '../jobs/events.ts';
import { type JobContext, JobManager, type JobSpec } from '../jobs/manager.ts';
import { planForTarget } from '../jobs/restore-plan.ts';
import { ConfirmTokens, describeRestore, targetIdentity } from '../jobs/restore-target.ts';
import type { BlockMapProvider, JobRunners } from '../jobs/runners.ts';
import { ScheduleError } from '../schedule/presets.ts';
import { Scheduler } from '../schedule/scheduler.ts';
import type { AttachedVolume } from '../tap/attach.ts';
import {
  authorizeHandlers,
  type Caller,
  callerForOwner,
  callerOf,
  holdForCaller,
  holdForCallerIfPresent,
  mayAccess,
  ownerFor,
  requireAccess,
  requireCallersDirectory,
  requireCallersDisk,
} from './authorization.ts';
import type { Connection, Handlers } from './dispatcher.ts';
import { ApiError } from './errors.ts';

const packageJson = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Most cells a block map may have: its full map (base64, one byte per cell) must fit in one message. */
export const MAX_BLOCKMAP_CELLS = Math.floor(((MAX_MESSAGE_BYTES - 4096) * 3) / 4);
/** Changed cells per 'blockmap' event; more changes go in several events, each within the message limit. */
const BLOCKMAP_CHANGES_PER_EVENT = 50_000;

/** How often a block-map subscription sends changed cells. */
const BLOCKMAP_INTERVAL_MS = 100;

export interface EngineOptions {
  state: StateStore;
  runners: JobRunners;
  /** Whether the engine runs as root (reported by engine.status). */
  privileged?: boolean;
  /** Times jobs, paces their progress and runs the schedules (tests drive it). */
  clock?: Clock;
  /** Where protect / unprotect change the boot setup (tests point it at a scratch root). */
  protectionSystem?: ProtectionSystem;
}

/**
 * A repository a call works on: `path` is what the job opens — a held directory's descriptor link, or an object
 * store's location — and `held` the directory itself (null for an object store).
 */
interface HeldRepository {
  location: string;
  path: string;
  held: HeldPath | null;
  close(): void;
}

function heldDirectoryRepository(location: string, held: HeldPath): HeldRepository {
  return { location, path: held.procPath, held, close: () => held.close() };
}

/**
 * An object-store repository is reached with the engine's own credentials, so naming one is root's (or the
 * engine's own user's): a user allowed on the socket could otherwise read or prune what those credentials reach.
 */
function objectStoreRepository(caller: Caller, location: string): HeldRepository {
  if (!caller.privileged) {
    throw new ApiError(
      'forbidden',
      `${location} is an object store reached with the engine's credentials; only root may name one.`,
    );
  }
  return { location, path: location, held: null, close: () => {} };
}

let nextConnectionId = 1;

/** A restore target as checked: the held target when it exists, and (for an image) its held directory. */
interface HeldTarget {
  name: string;
  target: HeldPath | null;
  parent: HeldPath | null;
}

function closeTarget(target: HeldTarget): void {
  target.target?.close();
  target.parent?.close();
}

/** The machine's drives; loaded on first use, as the native drive listing is slow to load for a one-shot command. */
async function listDrives(images: string[], inspect?: boolean) {
  const drives = await import('../drives/drivelist.ts');
  return drives.listDrives(images, ...(inspect === undefined ? [] : [inspect]));
}

export class Engine {
  readonly state: StateStore;
  readonly events = new EventBus();
  readonly jobs: JobManager;
  readonly scheduler: Scheduler;
  readonly runners: JobRunners;
  readonly privileged: boolean;
  readonly handlers: Handlers;
  #tokens = new ConfirmTokens();
  #protectionSystem: ProtectionSystem;
  /** Times jobs, schedules and block-map feeds. */
  #clock: Clock;
  /** Backup job id → its block map, while it runs (for block-map subscriptions). */
  #blockMaps = new Map<string, BlockMapProvider>();
  /** Volumes served through the tap, by source path. */
  #volumes = new Map<string, AttachedVolume>();
  /** The file each volume serves (device and inode, as checked when it was attached), by source path. */
  #volumeFiles = new Map<string, { dev: number; ino: number }>();
  /** Jobs an earlier engine left unfinished, reported interrupted at start (for the log). */
  interruptedAtStart: Job[] = [];
  /** Problems met re-attaching volumes at start, for the log. */
  readonly startNotes: string[] = [];
  /** plans.runNow waiting for the backup its run starts, by plan id. */
  #planBackups = new Map<string, (job: Job) => void>();
  /** Restore points mounted through the API, by directory: who asked, and the repository held for them. */
  #mounts = new Map<string, { owner: number | null; repo: { close(): void } }>();
  /** Paths that running jobs read (backups) or write (restores), by job id. */
  #busyPaths = new Map<string, { paths: Set<string>; writing: boolean }>();

  constructor(options: EngineOptions) {
    this.state = options.state;
    this.runners = options.runners;
    this.privileged = options.privileged ?? process.getuid?.() === 0;
    this.#clock = options.clock ?? systemClock;
    this.#protectionSystem = options.protectionSystem ?? defaultSystem();
    this.jobs = new JobManager(this.state, this.events, this.#clock);
    this.scheduler = new Scheduler(this.state, this.events, (plan) => this.#runPlan(plan), this.#clock);
    this.handlers = this.#makeHandlers();
  }

  /** Reports jobs an earlier run left unfinished, then starts the schedules. */
  async start(options: { schedules?: boolean; recover?: boolean; reattach?: boolean } = {}): Promise<Job[]> {
    const interrupted =
      options.recover === false
        ? []
        : await this.jobs.recoverInterrupted({
            backup: async (job) =>
              `The next backup of ${job.result?.source ?? 'this source'} resumes from its last checkpoint.`,
            restore: async (job) =>
              `${job.result?.target ?? 'The target'} holds a mix of old and restored data: restore it again.`,
          });
    this.interruptedAtStart = interrupted;
    for (const job of interrupted) this.events.emit('job.updated', job);
    if (options.reattach !== false) await this.#reattachVolumes();
    if (options.schedules !== false) await this.scheduler.start();
    return interrupted;
  }

  #onStopped: (() => Promise<void>)[] = [];

  /** Runs `cleanup` once the engine has stopped (e.g. releasing its state directory). */
  onStopped(cleanup: () => Promise<void>): void {
    this.#onStopped.push(cleanup);
  }

  async stop(): Promise<void> {
    await this.#stopParts();
    for (const cleanup of this.#onStopped.splice(0)) await cleanup().catch(() => {});
  }

  async #stopParts(): Promise<void> {
    await this.scheduler.stop();
    await this.jobs.interruptAll('The engine stopped while this job was running; run it again.');
    for (const path of [...this.#mounts.keys()]) await this.#unmount(path).catch(() => {});
    await this.runners.close?.();
    // Volumes stay recorded in the config and their tap helpers keep serving them (mounted or not): the next
    // engine adopts them without a remount.
    for (const volume of this.#volumes.values()) await volume.release().catch(() => {});
    this.#volumes.clear();
    this.#volumeFiles.clear();
    await this.state.flush();
  }

  /** Records a served volume; if its tap helper dies, says so (the log) and how to serve it again. */
  #serve(source: string, volume: AttachedVolume): void {
    this.#volumes.set(source, volume);
    void volume.whenLost().then((reason) => {
      process.emitWarning(reason);
      this.events.emit('drives.changed', {});
    });
  }

  async #reattachVolumes(): Promise<void> {
    for (const { source, owner } of this.state.config.attached) {
      try {
        // Attached again with its owner's rights, checked again: the file may have changed hands meanwhile.
        const held = holdForCaller(callerForOwner(owner), source);
        try {
          await requireCallersDisk(
            callerForOwner(owner),
            held,
            'as a volume',
            this.state.config.deviceGroups,
          );
          this.#serve(source, await this.#attachHeld(held));
        } finally {
          held.close();
        }
      } catch (error) {
        this.startNotes.push(`Could not re-attach ${source}: ${(error as Error).message}`);
      }
    }
  }

  /** A connection for code in the same process (the CLI hosting the engine, tests). */
  localConnection(
    onEvent: (event: EventName, data: unknown) => void = () => {},
  ): Connection & { close(): void } {
    const cleanups: (() => void)[] = [];
    return {
      id: nextConnectionId++,
      transport: 'in-process',
      uid: process.getuid?.() ?? null,
      sendEvent: onEvent,
      onClose: (cleanup) => cleanups.push(cleanup),
      close: () => {
        for (const cleanup of cleanups.splice(0)) cleanup();
      },
    };
  }

  static newConnectionId(): number {
    return nextConnectionId++;
  }

  /** A repository named in the config resolves to its location; anything else is taken as a path. */
  resolveRepo(repo: string): string {
    const named = this.state.config.repositories[repo] ?? repo;
    return isS3Location(named) ? named : resolve(named);
  }

  /** The attached volume whose source is the held path, or whose loop device it is (by device number). */
  async #volumeServingHeld(held: HeldPath): Promise<AttachedVolume | null> {
    const bySource = this.#volumes.get(held.name);
    if (bySource) return bySource;
    if (!held.stats.isBlockDevice()) return null;
    for (const volume of this.#volumes.values()) {
      const loop = await stat(volume.loopDevice).catch(() => null);
      if (loop?.isBlockDevice() && loop.rdev === held.stats.rdev) return volume;
    }
    return null;
  }

  /** The attached volume whose loop device `path` is a partition of (e.g. /dev/loop4p1 of /dev/loop4). */
  async #volumeOfPartition(path: string): Promise<AttachedVolume | null> {
    if (!path.startsWith('/dev/')) return null;
    for (const volume of this.#volumes.values()) {
      if (volume.partitions.includes(path)) return volume;
    }
    return null;
  }

  #busy(jobId: string, paths: string[], writing: boolean): void {
    this.#busyPaths.set(jobId, { paths: new Set(paths.map((path) => resolve(path))), writing });
  }

  /**
   * Opens the repository a caller names, once: a directory that (for a non-root caller) it owns, named in the
   * config or by path. The engine then works through the returned handle's procPath only.
   */
  #holdRepository(caller: Caller, repo: string): HeldRepository {
    const location = this.resolveRepo(repo);
    if (isS3Location(location)) return objectStoreRepository(caller, location);
    const held = holdForCaller(caller, location);
    requireCallersDirectory(caller, held, 'a repository');
    return heldDirectoryRepository(location, held);
  }

  /**
   * For repo.init: the repository directory, made (0700, owned by the caller) in a held directory the caller
   * owns when it does not exist yet.
   */
  async #holdNewRepository(caller: Caller, repo: string): Promise<HeldRepository> {
    const location = this.resolveRepo(repo);
    if (isS3Location(location)) return objectStoreRepository(caller, location);
    const existing = holdForCallerIfPresent(caller, location);
    if (existing) {
      requireCallersDirectory(caller, existing, 'a repository');
      return heldDirectoryRepository(location, existing);
    }
    const { parent, name } = splitParent(location);
    const heldParent = holdForCaller(caller, parent);
    requireCallersDirectory(caller, heldParent, 'a repository');
    try {
      const created = await mkdir(`${heldParent.procPath}/${name}`, { mode: 0o700 }).then(
        () => true,
        (error: NodeJS.ErrnoException) => {
          if (error.code !== 'EEXIST') throw error;
          return false;
        },
      );
      const held = holdChild(heldParent, name);
      if (created && held.stats.isDirectory() && held.stats.uid === 0 && !caller.privileged) {
        // The directory this call made becomes the caller's, through the held descriptor (never by name).
        chownSync(held.procPath, caller.uid, caller.gids[0] ?? caller.uid);
        return heldDirectoryRepository(location, held);
      }
      requireCallersDirectory(caller, held, 'a repository');
      return heldDirectoryRepository(location, held);
    } catch (error) {
      if (error instanceof HeldPathError) throw new ApiError('refused', error.message);
      throw error;
    } finally {
      heldParent.close();
    }
  }

  /** Something that does not exist yet: its directory must exist and (for a non-root caller) be the caller's. */
  #requireFutureEntry(caller: Caller, path: string, purpose: string): void {
    const { parent } = splitParent(path);
    const heldParent = holdForCaller(caller, parent);
    requireCallersDirectory(caller, heldParent, purpose);
    heldParent.close();
  }

  /** The source of a backup: a disk or image the caller may read, held. */
  async #holdSource(caller: Caller, source: string, purpose = 'as a backup source'): Promise<HeldPath> {
    const held = holdForCaller(caller, source);
    await requireCallersDisk(caller, held, purpose, this.state.config.deviceGroups);
    return held;
  }

  /**
   * A file container's directory, held: the container file is created in it (O_EXCL) and removed from it, by
   * its name inside that held directory, so no link or swapped parent can send either elsewhere.
   */
  #holdContainer(
    caller: Caller,
    container: Plan['container'] | undefined,
  ): { spec: Plan['container'] | undefined; held: HeldPath | null } {
    if (!container?.path) return { spec: container, held: null };
    if (container.kind === 'device') {
      // A partition is named by its node under /dev, which only root can change; it is checked as a disk the
      // caller may use, and held for the backup's life.
      const device = holdForCaller(caller, container.path);
      return { spec: { ...container, path: device.name }, held: device };
    }
    const { parent, name } = splitParent(container.path);
    const held = holdForCaller(caller, parent);
    requireCallersDirectory(caller, held, 'a container file in');
    return { spec: { ...container, path: `${held.procPath}/${name}` }, held };
  }

  /** What a restore would write: the held target when it exists, else its held parent directory. */
  async #holdTarget(caller: Caller, to: string): Promise<HeldTarget> {
    const name = resolve(to);
    const existing = holdForCallerIfPresent(caller, name);
    if (existing) {
      await requireCallersDisk(caller, existing, 'as a restore target', this.state.config.deviceGroups);
      if (!existing.stats.isFile()) return { name, target: existing, parent: null };
      try {
        return { name, target: existing, parent: holdParentOf(existing) };
      } catch (error) {
        existing.close();
        throw new ApiError('refused', (error as Error).message);
      }
    }
    const { parent, name: fileName } = splitParent(name);
    const heldParent = holdForCallerIfPresent(caller, parent);
    if (!heldParent)
      throw new ApiError('not-found', `${parent} does not exist; create it, or choose another target.`);
    requireCallersDirectory(caller, heldParent, 'a file as a restore target');
    // Something is there that leads nowhere (a dangling link): a new image is made only under its own name.
    let entry: HeldPath | null = null;
    try {
      entry = holdChild(heldParent, fileName);
    } catch (error) {
      if ((error as HeldPathError).code !== 'ENOENT') entry = heldParent;
    }
    if (entry) {
      entry.close();
      heldParent.close();
      throw new ApiError(
        'forbidden',
        `${name} is a symbolic link to nothing that exists; the engine creates a new image only under its own name, never through a link.`,
      );
    }
    return { name, target: null, parent: heldParent };
  }

  /** Refuses a restore target inside the repository it restores from (it would destroy what it reads). */
  #refuseInsideRepository(target: HeldTarget, repo: HeldRepository): void {
    if (target.parent && repo.held && heldInside(target.parent, repo.held)) {
      throw new ApiError(
        'refused',
        `${target.name} is inside the repository ${repo.location}; restoring there would destroy the repository. Choose a target outside it.`,
      );
    }
  }

  /** Every path a running job writes, or (with `reads`) also reads. */
  #allBusyPaths(reads = true): Set<string> {
    const all = new Set<string>();
    for (const { paths, writing } of this.#busyPaths.values()) {
      if (writing || reads) for (const busy of paths) all.add(busy);
    }
    return all;
  }

  /** The point `point` (an id, a prefix or 'latest') of the held repository, complete. */
  async #pointOf(repo: HeldRepository, point: string): Promise<PointSummary> {
    if (this.runners.findPoint) {
      const found = await this.runners.findPoint(repo.path, point);
      if (!found.complete) {
        throw new ApiError(
          'refused',
          `Restore point ${found.id} in ${repo.location} is incomplete (its backup did not finish).`,
        );
      }
      return { ...found, repo: repo.location };
    }
    const points = await this.runners.listPoints(repo.path);
    // 'latest' is the newest complete point, as the CLI has always taken it.
    const found =
      point === 'latest'
        ? points
            .filter((candidate) => candidate.complete)
            .sort((a, b) => a.time.localeCompare(b.time))
            .at(-1)
        : points.find((candidate) => candidate.id === point || candidate.id.startsWith(point));
    if (!found)
      throw new ApiError(
        'not-found',
        point === 'latest'
          ? `Repository ${repo.location} has no complete restore point.`
          : `No restore point '${point}' in ${repo.location}; list them with points.list.`,
      );
    if (!found.complete) {
      throw new ApiError(
        'refused',
        `Restore point ${found.id} in ${repo.location} is incomplete (its backup did not finish).`,
      );
    }
    return found;
  }

  /**
   * Starts a backup as `caller` (a plan's owner for scheduled runs): the source, repository and container are
   * opened and checked now, held for the job's life, and the job works only through them.
   */
  async #startBackup(
    caller: Caller,
    source: string,
    repoRef: string,
    container: Plan['container'] | undefined,
    title?: string,
    options: {
      preHook?: string | undefined;
      postHook?: string | undefined;
      allowInconsistent?: boolean | undefined;
      noResume?: boolean | undefined;
      strict?: boolean | undefined;
    } = {},
  ): Promise<Job> {
    const held: { close(): void }[] = [];
    const release = () => {
      for (const handle of held) handle.close();
    };
    try {
      let heldSource = await this.#holdSource(caller, source);
      held.push(heldSource);
      if (!(heldSource.stats.isFile() || heldSource.stats.isBlockDevice())) {
        throw new ApiError(
          'not-found',
          `No disk or image file at ${heldSource.name}; choose one from drives.list.`,
        );
      }
      // The loop device of an attached volume is that volume: its backup goes through the volume's session,
      // reading the volume's file (held and checked for this caller too), never the loop device the tap serves.
      const volume = await this.#volumeServingHeld(heldSource);
      if (volume && volume.source !== heldSource.name) {
        heldSource = await this.#holdSource(caller, volume.source);
        held.push(heldSource);
      }
      const sourcePath = heldSource.name;
      const whole = volume ? null : await this.#volumeOfPartition(sourcePath);
      if (whole) {
        throw new ApiError(
          'refused',
          `${sourcePath} is a partition of ${whole.source}, attached as ${whole.loopDevice}; back up ${whole.source} (or ${whole.loopDevice}) for a consistent point of the whole volume.`,
        );
      }
      if ((options.preHook || options.postHook) && !volume) {
        throw new ApiError(
          'bad-request',
          `Backup hooks run around the freeze of an attached volume, and ${sourcePath} is not attached in this engine; attach it (diskline attach with the daemon running), then back it up again.`,
        );
      }
      const repo = this.#holdRepository(caller, repoRef);
      held.push(repo);
      const heldContainer = this.#holdContainer(caller, container);
      if (heldContainer.held) held.push(heldContainer.held);
      if (heldContainer.held && container?.kind === 'device') {
        await requireCallersDisk(
          caller,
          heldContainer.held,
          'as a container',
          this.state.config.deviceGroups,
        );
      }
      const attached = this.#volumeFiles.get(sourcePath);
      if (attached && (attached.dev !== heldSource.stats.dev || attached.ino !== heldSource.stats.ino)) {
        throw new ApiError(
          'refused',
          `${sourcePath} is no longer the file that is attached; detach it (volumes.detach) and attach it again.`,
        );
      }
      if (this.#allBusyPaths(false).has(sourcePath)) {
        throw new ApiError(
          'busy',
          `${sourcePath} is in use by a running job (a restore writes it); wait or cancel it.`,
        );
      }
      const location = repo.location;
      const readSource = heldSource;
      const job = this.jobs.start({
        kind: 'backup',
        title: title ?? `Back up ${sourcePath} to ${location}`,
        repo: location,
        detail: { source: sourcePath, repo: location },
        owner: ownerFor(caller),
        run: async (context) => {
          this.#busy(context.id, [sourcePath], false);
          try {
            const volume = this.#volumes.get(sourcePath) ?? null;
            return await this.runners.backup(
              {
                source: readSource.procPath,
                repo: repo.path,
                container: heldContainer.spec,
                volume,
                ...options,
              },
              context,
              (provider) => {
                this.#blockMaps.set(context.id, provider);
              },
            );
          } finally {
            release();
            this.#blockMaps.delete(context.id);
            this.#busyPaths.delete(context.id);
            this.events.emit('points.changed', { repo: location }, ownerFor(caller));
          }
        },
      });
      return job;
    } catch (error) {
      release();
      throw error;
    }
  }

  async #runPlan(plan: Plan): Promise<{ ok: boolean; message: string }> {
    // A plan runs with the rights of whoever saved it, checked again now: a link planted since is not followed.
    const caller = callerForOwner(plan.owner);
    let backupJob: Job;
    try {
      backupJob = await this.#startBackup(
        caller,
        plan.source,
        plan.repo,
        plan.container,
        `Plan ${plan.name}: back up ${plan.source}`,
        { noResume: plan.noResume },
      );
    } catch (error) {
      return { ok: false, message: `Backup refused: ${(error as Error).message}` };
    }
    this.#planBackups.get(plan.id)?.(backupJob);
    const backup = await this.jobs.waitFor(backupJob.id);
    if (backup.state !== 'succeeded') {
      return { ok: false, message: `Backup ${backup.state}: ${backup.error ?? ''}`.trim() };
    }
    const keeps = Object.values(plan.retention).some((count) => count !== undefined);
    if (!keeps) return { ok: true, message: 'Backup succeeded.' };
    let repo: HeldRepository;
    try {
      repo = this.#holdRepository(caller, plan.repo);
    } catch (error) {
      return { ok: false, message: `Backup succeeded; retention refused: ${(error as Error).message}` };
    }
    const prune = await this.jobs.waitFor(
      this.jobs.start({
        kind: 'prune',
        title: `Plan ${plan.name}: apply retention to ${repo.location}`,
        repo: repo.location,
        owner: ownerFor(caller),
        run: async (context) => {
          try {
            return await this.runners.prune(
              { repo: repo.path, retention: plan.retention, dryRun: false },
              context,
            );
          } finally {
            repo.close();
          }
        },
      }).id,
    );
    this.events.emit('points.changed', { repo: repo.location }, ownerFor(caller));
    if (prune.state !== 'succeeded') {
      return {
        ok: false,
        message: `Backup succeeded; retention ${prune.state}: ${prune.error ?? ''}`.trim(),
      };
    }
    return { ok: true, message: 'Backup succeeded; retention applied.' };
  }

  /** Runs `work` with the repository held, closing it after (for calls that end with their answer). */
  async #withRepository<T>(
    caller: Caller,
    repoRef: string,
    work: (repo: HeldRepository) => Promise<T>,
  ): Promise<T> {
    const repo = this.#holdRepository(caller, repoRef);
    try {
      return await work(repo);
    } finally {
      repo.close();
    }
  }

  /** Starts a job on a held repository, which it keeps open until it ends (closed here if it cannot start). */
  #startRepositoryJob(
    caller: Caller,
    repo: HeldRepository,
    spec: Omit<JobSpec, 'owner' | 'run'>,
    run: (context: JobContext) => Promise<Record<string, unknown> | null>,
  ): Job {
    try {
      return this.jobs.start({
        ...spec,
        owner: ownerFor(caller),
        run: async (context) => {
          try {
            return await run(context);
          } finally {
            repo.close();
            this.events.emit('points.changed', { repo: repo.location }, ownerFor(caller));
          }
        },
      });
    } catch (error) {
      repo.close();
      throw error;
    }
  }

  #requireJob(caller: Caller, id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw new ApiError('not-found', `No job '${id}'; list them with jobs.list.`);
    requireAccess(caller, job.owner, `Job ${id}`);
    return job;
  }

  /** Every repository this engine knows (named, default, plans') and `extra`: their disks are not protected. */
  #knownRepositories(extra: string[]): string[] {
    const { config } = this.state;
    const named = [
      ...extra,
      ...Object.keys(config.repositories),
      ...(config.defaultRepo ? [config.defaultRepo] : []),
      ...this.state.plans.map((plan) => plan.repo),
    ];
    return [...new Set(named.map((repo) => this.resolveRepo(repo)))];
  }

  /** A disk's protection, with the tap's loop device when the tap serves it. */
  #diskProtection(disk: string) {
    return diskProtection(disk, this.#volumes.get(disk)?.loopDevice ?? null, this.#protectionSystem);
  }

  #requirePlan(caller: Caller, id: string): Plan {
    const plan = this.state.plans.find((candidate) => candidate.id === id);
    if (!plan) throw new ApiError('not-found', `No plan '${id}'.`);
    requireAccess(caller, plan.owner, `Plan '${plan.name}'`);
    return plan;
  }

  #makeHandlers(): Handlers {
    const handlers: Handlers = {
      'engine.status': (_params, connection) => {
        const caller = callerOf(connection);
        return {
          version: packageJson.version,
          privileged: this.privileged,
          schedulesPaused: this.scheduler.paused,
          nextRun: this.scheduler.nextRun(),
          defaultRepo: caller.privileged ? this.state.config.defaultRepo : null,
          // Root's repositories are root's business.
          repositories: caller.privileged
            ? Object.entries(this.state.config.repositories).map(([name, path]) => ({ name, path }))
            : [],
        };
      },
      'drives.list': async () => {
        const drives = await listDrives(this.state.config.images);
        return drives.map((drive) => ({
          ...drive,
          attachedAs: this.#volumes.get(drive.device)?.loopDevice ?? null,
        }));
      },
      'protection.list': async ({ device }) => {
        if (!device) {
          const drives = await listDrives(this.state.config.images);
          return Promise.all(drives.map((drive) => this.#diskProtection(drive.device)));
        }
        // Only what drives.list could show: a block device or a registered image (a root stat answers alike
        // for any other path, so a caller learns nothing of files it cannot see).
        const path = resolve(device);
        const info = await stat(path).catch(() => null);
        if (!info?.isBlockDevice() && !(info?.isFile() && this.state.config.images.includes(path)))
          throw new ApiError('not-found', `${device} is not there: no such disk or registered image.`);
        return [await this.#diskProtection(path)];
      },
      'protection.protect': async ({ device, confirm, repos, store }) => {
        const disk = await protectDisk(
          {
            device,
            confirm,
            repositories: this.#knownRepositories(repos ?? []),
            storePath: store,
          },
          this.#protectionSystem,
        );
        this.events.emit('drives.changed', {});
        return this.#diskProtection(disk);
      },
      'protection.unprotect': async ({ device, confirm }) => {
        const disk = await unprotectDisk({ device, confirm }, this.#protectionSystem);
        this.events.emit('drives.changed', {});
        return this.#diskProtection(disk);
      },
      'points.list': ({ repo }, connection) =>
        this.#withRepository(callerOf(connection), repo, async ({ location, path }) => {
          const checks = this.state.checks[location] ?? {};
          return (await this.runners.listPoints(path)).map((point) => ({
            ...point,
            repo: location,
            verify: checks[point.id]?.verify ?? point.verify,
            drill: checks[point.id]?.drill ?? point.drill,
          }));
        }),
      'repo.init': async ({ repo, encrypted }, connection) => {
        const held = await this.#holdNewRepository(callerOf(connection), repo);
        try {
          await this.runners.initRepository(held.path, encrypted);
        } finally {
          held.close();
        }
        return { repo: held.location };
      },
      'repo.checkS3': ({ location, accessKeyId, secretAccessKey }, connection) => {
        // As for any object-store repository: root's to name (the engine's credentials, the engine's network).
        objectStoreRepository(callerOf(connection), location);
        return checkS3Connection(
          location,
          accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
        );
      },
      'backup.start': async (
        { source, repo, container, preHook, postHook, allowInconsistent, noResume, strict },
        connection,
      ) => {
        const caller = callerOf(connection);
        // Hooks are shell commands the engine runs as root: only root (or the engine's own process) sets them,
        // never a user merely allowed on the socket or a page holding the WebSocket token.
        if ((preHook || postHook) && connection.transport !== 'in-process' && connection.uid !== 0) {
          throw new ApiError(
            'forbidden',
            'Backup hooks run as root, so only root may give them; ask an administrator to set them up.',
          );
        }
        return this.#startBackup(caller, source, repo, container, undefined, {
          preHook,
          postHook,
          allowInconsistent,
          noResume,
          strict,
        });
      },
      'restore.preview': async ({ repo, point, to, ...fit }, connection) => {
        const caller = callerOf(connection);
        return this.#withRepository(caller, repo, async (heldRepo) => {
          const found = await this.#pointOf(heldRepo, point);
          const target = await this.#holdTarget(caller, to);
          try {
            this.#refuseInsideRepository(target, heldRepo);
            const identity = await targetIdentity(target.name, target.target);
            const drives = await listDrives(this.state.config.images, false);
            // The layout written onto this target (fitted when its size differs), shown before the confirmation.
            const plan = await planForTarget(
              heldRepo.path,
              found.id,
              target.target?.procPath ?? null,
              fit,
            ).catch(() => null);
            const description = await describeRestore({
              identity,
              pointSize: found.sourceSize,
              pointLabel: `restore point ${found.id}`,
              drive: drives.find((drive) => drive.device === identity.path),
              busyPaths: this.#allBusyPaths(),
              attachedAs: this.#volumes.get(identity.path)?.loopDevice ?? null,
              plan,
            });
            return {
              ...description,
              confirmToken: this.#tokens.issue(identity, heldRepo.location, found.id),
            };
          } finally {
            closeTarget(target);
          }
        });
      },
      'restore.start': async ({ repo, point, to, confirmToken, instant, ...fit }, connection) => {
        const caller = callerOf(connection);
        const heldRepo = this.#holdRepository(caller, repo);
        let target: HeldTarget | null = null;
        try {
          const found = await this.#pointOf(heldRepo, point);
          target = await this.#holdTarget(caller, to);
          this.#refuseInsideRepository(target, heldRepo);
          const identity = await targetIdentity(target.name, target.target);
          if (!this.#tokens.matches(confirmToken, identity, heldRepo.location, found.id)) {
            throw new ApiError(
              'refused',
              `The confirmation does not match ${identity.path} as it is now (another target, or it changed since the preview); ask for a new preview.`,
            );
          }
          const drives = await listDrives(this.state.config.images, false);
          const plan = await planForTarget(
            heldRepo.path,
            found.id,
            target.target?.procPath ?? null,
            fit,
          ).catch(() => null);
          if (instant && plan && plan.mode !== 'as-is') {
            throw new ApiError(
              'refused',
              `An instant restore writes the point's layout as it is; ${identity.path} needs it fitted (${plan.mode}): restore it without instant.`,
            );
          }
          const { refusal } = await describeRestore({
            identity,
            pointSize: found.sourceSize,
            pointLabel: `restore point ${found.id}`,
            drive: drives.find((drive) => drive.device === identity.path),
            busyPaths: this.#allBusyPaths(),
            attachedAs: this.#volumes.get(identity.path)?.loopDevice ?? null,
            plan,
          });
          if (refusal) throw new ApiError('refused', refusal);
          // A new image is created now, O_EXCL in the held directory, as the caller's file.
          let created: { parent: HeldPath; name: string } | null = null;
          if (!target.target && target.parent) {
            const { name } = splitParent(target.name);
            try {
              created = { parent: target.parent, name };
              target.target = createInHeldDirectory(
                target.parent,
                name,
                caller.privileged ? null : { uid: caller.uid, gid: caller.gids[0] ?? caller.uid },
              );
            } catch (error) {
              throw new ApiError('refused', (error as Error).message);
            }
          }
          const heldTarget = target.target as HeldPath;
          const job = this.#startRepositoryJob(
            caller,
            heldRepo,
            {
              kind: 'restore',
              title: `Restore ${found.id.slice(0, 12)} to ${identity.path}`,
              repo: null,
              detail: { repo: heldRepo.location, point: found.id, target: identity.path },
            },
            async (context) => {
              const held = target as HeldTarget;
              this.#busy(context.id, [identity.path], true);
              try {
                // An instant restore's journal goes in the engine's state, named by the target's inode: never
                // beside the target, where a name the caller controls could lead it elsewhere.
                const { dev, ino } = heldTarget.stats;
                const journalPath = join(this.state.dir, 'instant-restore', `${dev}-${ino}.journal`);
                const result = await this.runners.restore(
                  {
                    repo: heldRepo.path,
                    point: found.id,
                    to: heldTarget.procPath,
                    instant,
                    journalPath,
                    ...fit,
                  },
                  context,
                );
                return result && { ...result, target: identity.path };
              } catch (error) {
                // A new image the restore never wrote to (damage found first, say) is not left behind.
                if (created) removeIfUnwritten(created.parent, created.name, heldTarget);
                throw error;
              } finally {
                closeTarget(held);
                this.#busyPaths.delete(context.id);
                this.events.emit('drives.changed', {});
              }
            },
          );
          target = null;
          return job;
        } catch (error) {
          if (target) closeTarget(target);
          heldRepo.close();
          throw error;
        }
      },
      'verify.start': ({ repo, readData, readDataSubset }, connection) => {
        const caller = callerOf(connection);
        const heldRepo = this.#holdRepository(caller, repo);
        return this.#startRepositoryJob(
          caller,
          heldRepo,
          {
            kind: 'verify',
            title: `Verify ${heldRepo.location}${readDataSubset ? ` (a sample of the bytes, ${readDataSubset})` : readData ? ' (every byte)' : ''}`,
            repo: null,
            detail: { repo: heldRepo.location },
          },
          (context) =>
            this.runners.verify(
              { repo: heldRepo.path, name: heldRepo.location, readData, readDataSubset },
              context,
            ),
        );
      },
      'prune.start': ({ repo, retention, dryRun }, connection) => {
        const caller = callerOf(connection);
        const heldRepo = this.#holdRepository(caller, repo);
        return this.#startRepositoryJob(
          caller,
          heldRepo,
          {
            kind: 'prune',
            title: `${dryRun ? 'Preview pruning' : 'Prune'} ${heldRepo.location}`,
            repo: heldRepo.location,
            detail: { repo: heldRepo.location },
          },
          (context) => this.runners.prune({ repo: heldRepo.path, retention, dryRun }, context),
        );
      },
      'copy.start': ({ from, to, points }, connection) => {
        const caller = callerOf(connection);
        const source = this.#holdRepository(caller, from);
        let target: HeldRepository;
        try {
          target = this.#holdRepository(caller, to);
        } catch (error) {
          source.close();
          throw error;
        }
        let started = false;
        try {
          const job = this.#startRepositoryJob(
            caller,
            source,
            {
              kind: 'copy',
              title: `Copy ${points.length} point(s) from ${source.location} to ${target.location}`,
              repo: target.location,
              detail: { from: source.location, to: target.location },
            },
            async (context) => {
              try {
                return await this.runners.copy({ from: source.path, to: target.path, points }, context);
              } finally {
                target.close();
                this.events.emit('points.changed', { repo: target.location }, ownerFor(caller));
              }
            },
          );
          started = true;
          return job;
        } finally {
          if (!started) target.close();
        }
      },
      'drill.start': async ({ repo, point, boot }, connection) => {
        const caller = callerOf(connection);
        const heldRepo = this.#holdRepository(caller, repo);
        let found: PointSummary;
        try {
          found = await this.#pointOf(heldRepo, point);
        } catch (error) {
          heldRepo.close();
          throw error;
        }
        return this.#startRepositoryJob(
          caller,
          heldRepo,
          {
            kind: 'drill',
            title: `Restore drill of ${found.id.slice(0, 12)}`,
            repo: null,
            detail: { repo: heldRepo.location, point: found.id },
          },
          (context) =>
            this.runners.drill(
              {
                repo: heldRepo.path,
                name: heldRepo.location,
                point: found.id,
                ...(boot ? { boot: withoutUndefined(boot) } : {}),
              },
              context,
            ),
        );
      },
      'mount.start': async ({ repo, point, dir }, connection) => {
        const caller = callerOf(connection);
        const heldRepo = this.#holdRepository(caller, repo);
        let heldDir: HeldPath | null = null;
        try {
          if (dir) {
            heldDir = holdForCaller(caller, dir);
            requireCallersDirectory(caller, heldDir, 'a restore point to be mounted on');
          } else if (!caller.privileged) {
            throw new ApiError('forbidden', 'Name a directory of yours to mount the restore point on.');
          }
          const found = await this.#pointOf(heldRepo, point);
          // The mount table takes the held directory over and closes it when the point is unmounted.
          const given = heldDir;
          heldDir = null;
          const { path } = await this.runners.mount({
            repo: heldRepo.path,
            point: found.id,
            dir: given,
          });
          const mount = { owner: ownerFor(caller), repo: heldRepo };
          this.#mounts.set(path, mount);
          // A user's mount lasts as long as the connection that asked for it.
          if (!caller.privileged) {
            connection.onClose(() => {
              if (this.#mounts.get(path) === mount) void this.#unmount(path).catch(() => {});
            });
          }
          return { path };
        } catch (error) {
          heldDir?.close();
          heldRepo.close();
          throw error;
        }
      },
      'mount.stop': async ({ path }, connection) => {
        const key = resolve(path);
        const mount = this.#mounts.get(key);
        if (mount) requireAccess(callerOf(connection), mount.owner, `The mount at ${key}`);
        await this.#unmount(key);
        return {};
      },
      'volumes.attach': async ({ source }, connection) => {
        const caller = callerOf(connection);
        const heldSource = await this.#holdSource(caller, source, 'as a volume');
        const sourcePath = heldSource.name;
        try {
          let volume = this.#volumes.get(sourcePath);
          // Its helper was killed: attaching again clears what it left and serves the source anew.
          if (volume?.lost) {
            this.#volumes.delete(sourcePath);
            volume = undefined;
          }
          if (volume) {
            const entry = this.state.config.attached.find((candidate) => candidate.source === sourcePath);
            requireAccess(caller, entry?.owner, `The volume ${sourcePath}`);
          } else {
            if (this.#allBusyPaths().has(sourcePath)) {
              throw new ApiError(
                'busy',
                `${sourcePath} is in use by a running job; attach it when the job has ended.`,
              );
            }
            volume = await this.#attachHeld(heldSource);
            this.#serve(sourcePath, volume);
            if (!this.state.config.attached.some((entry) => entry.source === sourcePath)) {
              this.state.config.attached.push({
                source: sourcePath,
                container: null,
                owner: ownerFor(caller),
              });
              await this.state.saveConfig();
            }
            this.events.emit('drives.changed', {});
          }
          return { source: sourcePath, loopDevice: volume.loopDevice, notes: [...volume.notes] };
        } finally {
          heldSource.close();
        }
      },
      'volumes.detach': async ({ source }, connection) => {
        const sourcePath = resolve(source);
        const volume = this.#volumes.get(sourcePath);
        if (!volume) throw new ApiError('not-found', `${sourcePath} is not attached.`);
        const entry = this.state.config.attached.find((candidate) => candidate.source === sourcePath);
        requireAccess(callerOf(connection), entry?.owner, `The volume ${sourcePath}`);
        if ([...this.#busyPaths.values()].some(({ paths }) => paths.has(sourcePath))) {
          throw new ApiError(
            'busy',
            `${sourcePath} is being backed up; detach it when the backup has ended.`,
          );
        }
        const mounted = await volume.mountPoints();
        if (mounted.length) {
          throw new ApiError(
            'refused',
            `${volume.loopDevice} (serving ${sourcePath}) is mounted on ${mounted.join(', ')}; unmount it, then detach.`,
          );
        }
        await volume.detach();
        this.#volumes.delete(sourcePath);
        this.#volumeFiles.delete(sourcePath);
        this.state.config.attached = this.state.config.attached.filter(
          (candidate) => candidate.source !== sourcePath,
        );
        await this.state.saveConfig();
        this.events.emit('drives.changed', {});
        return {};
      },
      'jobs.list': (_params, connection) => {
        const caller = callerOf(connection);
        return this.jobs.list().filter((job) => mayAccess(caller, job.owner));
      },
      'jobs.cancel': ({ id }, connection) => {
        this.#requireJob(callerOf(connection), id);
        const outcome = this.jobs.cancel(id);
        if (outcome === 'not-found')
          throw new ApiError('not-found', `No job '${id}'; list them with jobs.list.`);
        if (outcome === 'finished') {
          throw new ApiError(
            'refused',
            `Job ${id} has already ended (${this.jobs.get(id)?.state}); nothing to cancel.`,
          );
        }
        return {};
      },
      'plans.list': (_params, connection) => {
        const caller = callerOf(connection);
        return this.scheduler.list().filter((plan) => mayAccess(caller, plan.owner));
      },
      'plans.save': async (draft, connection) => {
        const caller = callerOf(connection);
        // Replacing a plan is acting on it: only its owner (or root) may.
        const existing = this.state.plans.find((plan) => plan.id === draft.id);
        if (existing) requireAccess(caller, existing.owner, `Plan '${existing.name}'`);
        // A plan runs later with its owner's rights, checked again then; check now what the caller could not do.
        // Its source and repository may not exist yet (an image to come, a repository to init): then they must
        // be in a directory the caller owns.
        const sourceNow = holdForCallerIfPresent(caller, draft.source);
        sourceNow?.close();
        if (sourceNow) (await this.#holdSource(caller, draft.source)).close();
        else this.#requireFutureEntry(caller, draft.source, 'a backup source');
        const repoLocation = this.resolveRepo(draft.repo);
        const repoNow = isS3Location(repoLocation) ? null : holdForCallerIfPresent(caller, repoLocation);
        repoNow?.close();
        if (repoNow || isS3Location(repoLocation)) this.#holdRepository(caller, draft.repo).close();
        else this.#requireFutureEntry(caller, repoLocation, 'a repository');
        const container = this.#holdContainer(caller, draft.container);
        try {
          // A partition container must be a disk the caller may use, as the backup will check at each run.
          if (container.held && draft.container?.kind === 'device') {
            await requireCallersDisk(
              caller,
              container.held,
              'as a container',
              this.state.config.deviceGroups,
            );
          }
        } finally {
          container.held?.close();
        }
        try {
          return await this.scheduler.save({ ...draft, owner: ownerFor(caller) });
        } catch (error) {
          if (error instanceof ScheduleError) throw new ApiError('bad-request', error.message);
          throw error;
        }
      },
      'plans.delete': async ({ id }, connection) => {
        this.#requirePlan(callerOf(connection), id);
        if (!(await this.scheduler.remove(id))) throw new ApiError('not-found', `No plan '${id}'.`);
        return {};
      },
      'plans.runNow': async ({ id }, connection) => {
        const plan = this.#requirePlan(callerOf(connection), id);
        if (this.scheduler.isRunning(id)) {
          throw new ApiError('busy', `Plan '${plan.name}' is already running; runs never overlap.`);
        }
        // The run opens and checks the plan's paths, then starts its backup: answer with that job, or with why
        // the run ended without one.
        const started = new Promise<Job>((resolve) => this.#planBackups.set(id, resolve));
        const ran = this.scheduler.runNow(id, 'user').then(() => null);
        const job = await Promise.race([started, ran]).finally(() => this.#planBackups.delete(id));
        if (!job) {
          const outcome = this.state.plans.find((candidate) => candidate.id === id)?.lastRun;
          throw new ApiError(
            'failed',
            `Plan '${plan.name}' did not start a backup${outcome ? `: ${outcome.message}` : ''}.`,
          );
        }
        return job;
      },
      'schedules.setPaused': async ({ paused }) => {
        await this.scheduler.setPaused(paused);
        return { paused };
      },
      'blockmap.subscribe': ({ jobId, cells }, connection) => {
        const job = this.#requireJob(callerOf(connection), jobId);
        if (job.kind !== 'backup')
          throw new ApiError('bad-request', `Job ${jobId} is a ${job.kind}; only backups have a block map.`);
        this.#feedBlockMap(jobId, cells, connection);
        return {};
      },
    };
    return authorizeHandlers(handlers);
  }

  /** Attaches a held source to the tap and checks that what got attached is what was checked. */
  async #attachHeld(held: HeldPath): Promise<AttachedVolume> {
    let volume: AttachedVolume;
    try {
      volume = await this.runners.attach(held.name, join(this.state.dir, 'tracking'));
    } catch (error) {
      if (failureKindOf(error) === 'refusal') throw new ApiError('refused', (error as Error).message);
      throw error;
    }
    // The tap opens the source by name (it records that name for re-attaching): refuse it if the name no
    // longer leads to the file that was checked.
    const now = holdPathIfPresent(held.name);
    const same = now?.stats.dev === held.stats.dev && now?.stats.ino === held.stats.ino;
    now?.close();
    if (!same) {
      await volume.detach().catch(() => {});
      throw new ApiError('refused', `${held.name} changed while it was being attached; attach it again.`);
    }
    this.#volumeFiles.set(held.name, { dev: held.stats.dev, ino: held.stats.ino });
    return volume;
  }

  async #unmount(path: string): Promise<void> {
    const mount = this.#mounts.get(path);
    this.#mounts.delete(path);
    try {
      const { NotMountedError } = await import('../jobs/mount.ts');
      await this.runners.unmount(path).catch((error: Error) => {
        throw error instanceof NotMountedError ? new ApiError('not-found', error.message) : error;
      });
    } finally {
      mount?.repo.close();
    }
  }

  /** Sends a job's block map to one connection: the full map as soon as it exists, then changes at ≤10 Hz. */
  #feedBlockMap(jobId: string, cells: number, connection: Connection): void {
    let watch: ReturnType<BlockMapProvider['watchBlockMap']> | null = null;
    const tick = () => {
      const active = this.jobs.isActive(jobId);
      if (!watch) {
        const provider = this.#blockMaps.get(jobId);
        if (!provider) {
          if (!active) stop();
          return;
        }
        watch = provider.watchBlockMap(Math.min(cells, MAX_BLOCKMAP_CELLS));
        const full = watch.full();
        connection.sendEvent('blockmap', {
          jobId,
          cellCount: watch.cellCount,
          unitsPerCell: watch.unitsPerCell,
          full: true,
          cells: Buffer.from(full.buffer, full.byteOffset, full.byteLength).toString('base64'),
        });
      } else {
        const changes = watch.changes();
        for (let start = 0; start < changes.length; start += 2 * BLOCKMAP_CHANGES_PER_EVENT) {
          connection.sendEvent('blockmap', {
            jobId,
            cellCount: watch.cellCount,
            unitsPerCell: watch.unitsPerCell,
            full: false,
            changes: changes.slice(start, start + 2 * BLOCKMAP_CHANGES_PER_EVENT),
          });
        }
      }
      // The job has ended: this was the last look, with its final states.
      if (!active) stop();
    };
    let timer: TimerHandle | null = null;
    let stopped = false;
    const stop = () => {
      stopped = true;
      if (timer) this.#clock.clearTimeout(timer);
      watch?.close();
    };
    const tickAndRepeat = () => {
      tick();
      if (!stopped) timer = this.#clock.setTimeout(tickAndRepeat, BLOCKMAP_INTERVAL_MS);
    };
    connection.onClose(stop);
    tickAndRepeat();
  }
}

/** The optional fields a schema left undefined, dropped (the job's parameters are exact optional types). */
function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
