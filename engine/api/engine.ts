// The engine as one object: state on disk, jobs, schedules, drives — and the API methods that expose them.
// Transports (unix socket, WebSocket, in-process) only move frames; everything a method does is here.

import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { type Clock, systemClock, type TimerHandle } from '../../protocol/clock.ts';
import { type EventName, MAX_MESSAGE_BYTES } from '../../protocol/messages.ts';
import type { Job, Plan, PointSummary } from '../../protocol/model.ts';
import { checkS3Connection } from '../backend/s3/connection-check.ts';
import type { StateStore } from '../config/state.ts';
import { listDrives } from '../drives/drivelist.ts';
import { EventBus } from '../jobs/events.ts';
import { JobManager } from '../jobs/manager.ts';
import { NotMountedError } from '../jobs/mount.ts';
import { ConfirmTokens, describeRestore, targetIdentity } from '../jobs/restore-target.ts';
import type { BlockMapProvider, JobRunners } from '../jobs/runners.ts';
import { ScheduleError } from '../schedule/presets.ts';
import { Scheduler } from '../schedule/scheduler.ts';
import type { AttachedVolume } from '../tap/attach.ts';
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
}

let nextConnectionId = 1;

export class Engine {
  readonly state: StateStore;
  readonly events = new EventBus();
  readonly jobs: JobManager;
  readonly scheduler: Scheduler;
  readonly runners: JobRunners;
  readonly privileged: boolean;
  readonly handlers: Handlers;
  #tokens = new ConfirmTokens();
  /** Times jobs, schedules and block-map feeds. */
  #clock: Clock;
  /** Backup job id → its block map, while it runs (for block-map subscriptions). */
  #blockMaps = new Map<string, BlockMapProvider>();
  /** Volumes served through the tap, by source path. */
  #volumes = new Map<string, AttachedVolume>();
  /** Jobs an earlier engine left unfinished, reported interrupted at start (for the log). */
  interruptedAtStart: Job[] = [];
  /** Problems met re-attaching volumes at start, for the log. */
  readonly startNotes: string[] = [];
  /** Paths that running jobs read (backups) or write (restores), by job id. */
  #busyPaths = new Map<string, { paths: Set<string>; writing: boolean }>();

  constructor(options: EngineOptions) {
    this.state = options.state;
    this.runners = options.runners;
    this.privileged = options.privileged ?? process.getuid?.() === 0;
    this.#clock = options.clock ?? systemClock;
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
    await this.runners.close?.();
    // Volumes stay recorded in the config and their tap helpers keep serving them (mounted or not): the next
    // engine adopts them without a remount.
    for (const volume of this.#volumes.values()) await volume.release().catch(() => {});
    this.#volumes.clear();
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
    for (const { source } of this.state.config.attached) {
      try {
        this.#serve(source, await this.runners.attach(source, join(this.state.dir, 'tracking')));
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
    return this.state.config.repositories[repo] ?? resolve(repo);
  }

  #busy(jobId: string, paths: string[], writing: boolean): void {
    this.#busyPaths.set(jobId, { paths: new Set(paths.map((path) => resolve(path))), writing });
  }

  /**
   * A user allowed on the socket who is not root acts through a root engine: the places it names for the engine
   * to write or mount on must be directories that user owns (never /etc, never another user's home).
   */
  async #requireCallersDirectory(connection: Connection, dir: string, purpose: string): Promise<void> {
    if (!this.#isUnprivileged(connection)) return;
    const info = await stat(dir).catch(() => null);
    if (!info?.isDirectory() || info.uid !== connection.uid) {
      throw new ApiError(
        'forbidden',
        `${dir} is not a directory of yours (uid ${connection.uid}); name one you own for ${purpose}.`,
      );
    }
  }

  /**
   * For a non-root caller: an image file the engine is to read or write must be the caller's own file (or, not
   * there yet, go in a directory the caller owns); block devices are what the engine is for and stay allowed.
   */
  async #requireCallersFile(connection: Connection, path: string, purpose: string): Promise<void> {
    if (!this.#isUnprivileged(connection)) return;
    const info = await stat(path).catch(() => null);
    if (info?.isBlockDevice()) return;
    if (info) {
      if (info.isFile() && info.uid === connection.uid) return;
      throw new ApiError(
        'forbidden',
        `${path} is not a file of yours (uid ${connection.uid}); you cannot use it ${purpose}.`,
      );
    }
    await this.#requireCallersDirectory(connection, dirname(path), `a file ${purpose}`);
  }

  #isUnprivileged(connection: Connection): boolean {
    return (
      connection.transport === 'unix' && connection.uid !== 0 && connection.uid !== (process.getuid?.() ?? 0)
    );
  }

  /** A repository named in the config was set up by root; a path a non-root caller gives must be theirs. */
  async #requireCallersRepository(connection: Connection, repo: string): Promise<void> {
    if (!this.#isUnprivileged(connection) || this.state.config.repositories[repo]) return;
    const location = resolve(repo);
    const info = await stat(location).catch(() => null);
    await this.#requireCallersDirectory(connection, info ? location : dirname(location), 'a repository');
  }

  /** Every path a running job writes, or (with `reads`) also reads. */
  #allBusyPaths(reads = true): Set<string> {
    const all = new Set<string>();
    for (const { paths, writing } of this.#busyPaths.values()) {
      if (writing || reads) for (const busy of paths) all.add(busy);
    }
    return all;
  }

  async #pointOf(repo: string, point: string): Promise<PointSummary> {
    const points = await this.runners.listPoints(repo);
    const found = points.find((candidate) => candidate.id === point || candidate.id.startsWith(point));
    if (!found)
      throw new ApiError('not-found', `No restore point '${point}' in ${repo}; list them with points.list.`);
    if (!found.complete) {
      throw new ApiError(
        'refused',
        `Restore point ${found.id} in ${repo} is incomplete (its backup did not finish).`,
      );
    }
    return found;
  }

  #startBackup(
    source: string,
    repoRef: string,
    container: Plan['container'] | undefined,
    title?: string,
    how: {
      preHook?: string | undefined;
      postHook?: string | undefined;
      noResume?: boolean | undefined;
      strict?: boolean | undefined;
    } = {},
  ): Job {
    const repo = this.resolveRepo(repoRef);
    const sourcePath = resolve(source);
    const job = this.jobs.start({
      kind: 'backup',
      title: title ?? `Back up ${sourcePath} to ${repo}`,
      repo,
      detail: { source: sourcePath, repo },
      run: async (context) => {
        this.#busy(context.id, [sourcePath], false);
        try {
          const volume = this.#volumes.get(sourcePath) ?? null;
          return await this.runners.backup(
            { source: sourcePath, repo, container, volume, ...how },
            context,
            (provider) => {
              this.#blockMaps.set(context.id, provider);
            },
          );
        } finally {
          this.#blockMaps.delete(context.id);
          this.#busyPaths.delete(context.id);
          this.events.emit('points.changed', { repo });
        }
      },
    });
    return job;
  }

  async #runPlan(plan: Plan): Promise<{ ok: boolean; message: string }> {
    const backup = await this.jobs.waitFor(
      this.#startBackup(plan.source, plan.repo, plan.container, `Plan ${plan.name}: back up ${plan.source}`, {
        noResume: plan.noResume,
      }).id,
    );
    if (backup.state !== 'succeeded') {
      return { ok: false, message: `Backup ${backup.state}: ${backup.error ?? ''}`.trim() };
    }
    const keeps = Object.values(plan.retention).some((count) => count !== undefined);
    if (!keeps) return { ok: true, message: 'Backup succeeded.' };
    const repo = this.resolveRepo(plan.repo);
    const prune = await this.jobs.waitFor(
      this.jobs.start({
        kind: 'prune',
        title: `Plan ${plan.name}: apply retention to ${repo}`,
        repo,
        run: (context) => this.runners.prune({ repo, retention: plan.retention, dryRun: false }, context),
      }).id,
    );
    this.events.emit('points.changed', { repo });
    if (prune.state !== 'succeeded') {
      return {
        ok: false,
        message: `Backup succeeded; retention ${prune.state}: ${prune.error ?? ''}`.trim(),
      };
    }
    return { ok: true, message: 'Backup succeeded; retention applied.' };
  }

  #makeHandlers(): Handlers {
    return {
      'engine.status': () => ({
        version: packageJson.version,
        privileged: this.privileged,
        schedulesPaused: this.scheduler.paused,
        nextRun: this.scheduler.nextRun(),
        defaultRepo: this.state.config.defaultRepo,
        repositories: Object.entries(this.state.config.repositories).map(([name, path]) => ({ name, path })),
      }),
      'drives.list': async () => {
        const drives = await listDrives(this.state.config.images);
        return drives.map((drive) => ({
          ...drive,
          attachedAs: this.#volumes.get(drive.device)?.loopDevice ?? null,
        }));
      },
      'points.list': async ({ repo }) => {
        const location = this.resolveRepo(repo);
        const checks = this.state.checks[location] ?? {};
        return (await this.runners.listPoints(location)).map((point) => ({
          ...point,
          verify: checks[point.id]?.verify ?? point.verify,
          drill: checks[point.id]?.drill ?? point.drill,
        }));
      },
      'repo.init': async ({ repo, encrypted }, connection) => {
        await this.#requireCallersRepository(connection, repo);
        const location = this.resolveRepo(repo);
        await this.runners.initRepository(location, encrypted);
        return { repo: location };
      },
      'repo.checkS3': ({ location, accessKeyId, secretAccessKey }) =>
        checkS3Connection(
          location,
          accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
        ),
      'backup.start': async (
        { source, repo, container, preHook, postHook, noResume, strict },
        connection,
      ) => {
        // Hooks are shell commands the engine runs as root: only root (or the engine's own process) sets them,
        // never a user merely allowed on the socket or a page holding the WebSocket token.
        if ((preHook || postHook) && connection.transport !== 'in-process' && connection.uid !== 0) {
          throw new ApiError(
            'forbidden',
            'Backup hooks run as root, so only root may give them; ask an administrator to set them up.',
          );
        }
        await this.#requireCallersFile(connection, resolve(source), 'as a backup source');
        await this.#requireCallersRepository(connection, repo);
        if (container?.path) {
          await this.#requireCallersDirectory(
            connection,
            dirname(resolve(container.path)),
            'a container file in',
          );
        }
        const sourcePath = resolve(source);
        const info = await stat(sourcePath).catch(() => null);
        if (!info || !(info.isFile() || info.isBlockDevice())) {
          throw new ApiError(
            'not-found',
            `No disk or image file at ${sourcePath}; choose one from drives.list.`,
          );
        }
        if (this.#allBusyPaths(false).has(sourcePath)) {
          throw new ApiError(
            'busy',
            `${sourcePath} is in use by a running job (a restore writes it); wait or cancel it.`,
          );
        }
        return this.#startBackup(sourcePath, repo, container, undefined, {
          preHook,
          postHook,
          noResume,
          strict,
        });
      },
      'restore.preview': async ({ repo, point, to }) => {
        const location = this.resolveRepo(repo);
        const found = await this.#pointOf(location, point);
        const identity = await targetIdentity(to);
        const drives = await listDrives(this.state.config.images, false);
        const description = await describeRestore({
          identity,
          pointSize: found.sourceSize,
          pointLabel: `restore point ${found.id}`,
          drive: drives.find((drive) => drive.device === identity.path),
          busyPaths: this.#allBusyPaths(),
          attachedAs: this.#volumes.get(identity.path)?.loopDevice ?? null,
        });
        return { ...description, confirmToken: this.#tokens.issue(identity, location, found.id) };
      },
      'restore.start': async ({ repo, point, to, confirmToken, instant }, connection) => {
        await this.#requireCallersFile(connection, resolve(to), 'as a restore target');
        const location = this.resolveRepo(repo);
        const found = await this.#pointOf(location, point);
        const identity = await targetIdentity(to);
        if (!this.#tokens.matches(confirmToken, identity, location, found.id)) {
          throw new ApiError(
            'refused',
            `The confirmation does not match ${identity.path} as it is now (another target, or it changed since the preview); ask for a new preview.`,
          );
        }
        const drives = await listDrives(this.state.config.images, false);
        const { refusal } = await describeRestore({
          identity,
          pointSize: found.sourceSize,
          pointLabel: `restore point ${found.id}`,
          drive: drives.find((drive) => drive.device === identity.path),
          busyPaths: this.#allBusyPaths(),
          attachedAs: this.#volumes.get(identity.path)?.loopDevice ?? null,
        });
        if (refusal) throw new ApiError('refused', refusal);
        return this.jobs.start({
          kind: 'restore',
          title: `Restore ${found.id.slice(0, 12)} to ${identity.path}`,
          repo: null,
          detail: { repo: location, point: found.id, target: identity.path },
          run: async (context) => {
            this.#busy(context.id, [identity.path], true);
            try {
              return await this.runners.restore(
                { repo: location, point: found.id, to: identity.path, instant },
                context,
              );
            } finally {
              this.#busyPaths.delete(context.id);
              this.events.emit('drives.changed', {});
            }
          },
        });
      },
      'verify.start': ({ repo, readData }) => {
        const location = this.resolveRepo(repo);
        return this.jobs.start({
          kind: 'verify',
          title: `Verify ${location}${readData ? ' (every byte)' : ''}`,
          repo: null,
          detail: { repo: location },
          run: async (context) => {
            try {
              return await this.runners.verify({ repo: location, readData }, context);
            } finally {
              this.events.emit('points.changed', { repo: location });
            }
          },
        });
      },
      'prune.start': ({ repo, retention, dryRun }) => {
        const location = this.resolveRepo(repo);
        return this.jobs.start({
          kind: 'prune',
          title: `${dryRun ? 'Preview pruning' : 'Prune'} ${location}`,
          repo: location,
          detail: { repo: location },
          run: async (context) => {
            try {
              return await this.runners.prune({ repo: location, retention, dryRun }, context);
            } finally {
              this.events.emit('points.changed', { repo: location });
            }
          },
        });
      },
      'drill.start': async ({ repo, point }) => {
        const location = this.resolveRepo(repo);
        const found = await this.#pointOf(location, point);
        return this.jobs.start({
          kind: 'drill',
          title: `Restore drill of ${found.id.slice(0, 12)}`,
          repo: null,
          detail: { repo: location, point: found.id },
          run: async (context) => {
            try {
              return await this.runners.drill({ repo: location, point: found.id }, context);
            } finally {
              this.events.emit('points.changed', { repo: location });
            }
          },
        });
      },
      'mount.start': async ({ repo, point, dir }, connection) => {
        if (dir)
          await this.#requireCallersDirectory(connection, resolve(dir), 'a restore point to be mounted on');
        const location = this.resolveRepo(repo);
        const found = await this.#pointOf(location, point);
        return this.runners.mount({ repo: location, point: found.id, dir });
      },
      'mount.stop': async ({ path }) => {
        await this.runners.unmount(path).catch((error: Error) => {
          throw error instanceof NotMountedError ? new ApiError('not-found', error.message) : error;
        });
        return {};
      },
      'volumes.attach': async ({ source }, connection) => {
        await this.#requireCallersFile(connection, resolve(source), 'as a volume');
        const sourcePath = resolve(source);
        let volume = this.#volumes.get(sourcePath);
        // Its helper was killed: attaching again clears what it left and serves the source anew.
        if (volume?.lost) {
          this.#volumes.delete(sourcePath);
          volume = undefined;
        }
        if (!volume) {
          if (this.#allBusyPaths().has(sourcePath)) {
            throw new ApiError(
              'busy',
              `${sourcePath} is in use by a running job; attach it when the job has ended.`,
            );
          }
          try {
            volume = await this.runners.attach(sourcePath, join(this.state.dir, 'tracking'));
          } catch (error) {
            if ((error as { exitCode?: number }).exitCode === 3)
              throw new ApiError('refused', (error as Error).message);
            throw error;
          }
          this.#serve(sourcePath, volume);
          if (!this.state.config.attached.some((entry) => entry.source === sourcePath)) {
            this.state.config.attached.push({ source: sourcePath, container: null });
            await this.state.saveConfig();
          }
          this.events.emit('drives.changed', {});
        }
        return { source: sourcePath, loopDevice: volume.loopDevice, notes: [...volume.notes] };
      },
      'volumes.detach': async ({ source }) => {
        const sourcePath = resolve(source);
        const volume = this.#volumes.get(sourcePath);
        if (!volume) throw new ApiError('not-found', `${sourcePath} is not attached.`);
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
        this.state.config.attached = this.state.config.attached.filter(
          (entry) => entry.source !== sourcePath,
        );
        await this.state.saveConfig();
        this.events.emit('drives.changed', {});
        return {};
      },
      'jobs.list': () => this.jobs.list(),
      'jobs.cancel': ({ id }) => {
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
      'plans.list': () => this.scheduler.list(),
      'plans.save': async (draft, connection) => {
        // A plan runs later as the engine itself: check now what the caller could not do directly.
        await this.#requireCallersFile(connection, resolve(draft.source), 'as a backup source');
        await this.#requireCallersRepository(connection, draft.repo);
        if (draft.container.path) {
          await this.#requireCallersDirectory(
            connection,
            dirname(resolve(draft.container.path)),
            'a container file in',
          );
        }
        try {
          return await this.scheduler.save(draft);
        } catch (error) {
          if (error instanceof ScheduleError) throw new ApiError('bad-request', error.message);
          throw error;
        }
      },
      'plans.delete': async ({ id }) => {
        if (!(await this.scheduler.remove(id))) throw new ApiError('not-found', `No plan '${id}'.`);
        return {};
      },
      'plans.runNow': async ({ id }) => {
        const plan = this.state.plans.find((candidate) => candidate.id === id);
        if (!plan) throw new ApiError('not-found', `No plan '${id}'.`);
        if (this.scheduler.isRunning(id)) {
          throw new ApiError('busy', `Plan '${plan.name}' is already running; runs never overlap.`);
        }
        const before = new Set(this.jobs.list().map((job) => job.id));
        void this.scheduler.runNow(id, 'user');
        const started = this.jobs.list().find((job) => !before.has(job.id) && job.kind === 'backup');
        if (!started) throw new ApiError('failed', `Plan '${plan.name}' did not start a backup.`);
        return started;
      },
      'schedules.setPaused': async ({ paused }) => {
        await this.scheduler.setPaused(paused);
        return { paused };
      },
      'blockmap.subscribe': ({ jobId, cells }, connection) => {
        const job = this.jobs.get(jobId);
        if (!job) throw new ApiError('not-found', `No job '${jobId}'.`);
        if (job.kind !== 'backup')
          throw new ApiError('bad-request', `Job ${jobId} is a ${job.kind}; only backups have a block map.`);
        this.#feedBlockMap(jobId, cells, connection);
        return {};
      },
    };
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
