// Runs the engine's long operations as jobs: each has an id, a state, progress published as 'job.updated'
// events (at most 10 per second while running, at once on every state change) and can be cancelled.
// Jobs that write a repository (backup, prune) run one at a time per repository; later ones queue.
// Job records are persisted on every state change, so a daemon that restarts reports the jobs an earlier
// run left unfinished as 'interrupted' and lets their kind clean up after them.
import { randomUUID } from 'node:crypto';
import { type Clock, systemClock, type TimerHandle } from '../../protocol/clock.ts';
import { DamageError, type FailureKind, failureKindOf } from '../../protocol/failure.ts';
import type { ContainerState, Job, JobKind } from '../../protocol/model.ts';
import type { StateStore } from '../config/state.ts';
import type { EventBus } from './events.ts';

/** Shortest time between two progress events of one job. */
export const PROGRESS_INTERVAL_MS = 100;
/** Finished jobs kept in the list and on disk. */
const FINISHED_JOBS_KEPT = 50;
const WRITER_KINDS = new Set<JobKind>(['backup', 'prune']);

export interface JobProgress {
  doneBytes?: number;
  totalBytes?: number;
  container?: ContainerState | null;
  units?: Job['units'];
  unitSize?: number | null;
  /** Facts to show while the job runs (merged into the job's result), e.g. the loop device of an instant restore. */
  detail?: Record<string, unknown>;
}

/** What a running job's code gets: its cancellation signal and a way to report progress. */
export interface JobContext {
  readonly id: string;
  readonly signal: AbortSignal;
  progress(update: JobProgress): void;
}

export interface JobSpec {
  kind: JobKind;
  title: string;
  /** The repository a writer job locks; null for jobs that only read. */
  repo: string | null;
  /** Extra facts kept with the job record (source, target, point), e.g. for cleanup after a restart. */
  detail?: Record<string, unknown>;
  /** The uid that started it; null or absent: root's (engine/api/authorization.ts). */
  owner?: number | null;
  run(context: JobContext): Promise<Record<string, unknown> | null>;
}

/** Cleans up after a job an earlier engine run left unfinished; returns what it did, for the record. */
export type InterruptedJobCleanup = (job: Job) => Promise<string>;

export class JobCancelledError extends Error {
  constructor(id: string) {
    super(`Job ${id} was cancelled.`);
  }
}

interface LiveJob {
  record: Job;
  spec: JobSpec;
  abort: AbortController;
  /** Set when the engine stops under the job: it ends 'interrupted', not 'cancelled'. */
  interruptedBy: string | null;
  lastEmit: number;
  emitTimer: TimerHandle | null;
  /** Rate samples for bytesPerSecond: [time ms, doneBytes]. */
  sampleAt: number;
  sampleBytes: number;
  done: Promise<void>;
  finish: () => void;
}

export class JobManager {
  #state: StateStore;
  #events: EventBus;
  #live = new Map<string, LiveJob>();
  /** repo → the ids of writer jobs, the running one first. */
  #writerQueues = new Map<string, string[]>();
  /** Times the jobs' records and paces their progress events. */
  #clock: Clock;

  constructor(state: StateStore, events: EventBus, clock: Clock = systemClock) {
    this.#state = state;
    this.#events = events;
    this.#clock = clock;
  }

  #isoNow(): string {
    return new Date(this.#clock.now()).toISOString();
  }

  /**
   * Marks jobs that were queued or running when the engine last stopped as 'interrupted' and runs the
   * cleanup for their kind. Call once at start, before any job starts.
   */
  async recoverInterrupted(cleanups: Partial<Record<JobKind, InterruptedJobCleanup>>): Promise<Job[]> {
    const interrupted: Job[] = [];
    for (const job of this.#state.jobs) {
      if (job.state !== 'running' && job.state !== 'queued') continue;
      let cleanupNote = '';
      const cleanup = cleanups[job.kind];
      if (cleanup) {
        try {
          cleanupNote = ` ${await cleanup(job)}`;
        } catch (error) {
          cleanupNote = ` Cleanup failed: ${(error as Error).message}`;
        }
      }
      job.state = 'interrupted';
      job.endedAt = this.#isoNow();
      job.error = `The engine stopped while this job was ${job.startedAt ? 'running' : 'queued'} (restart or crash); run it again.${cleanupNote}`;
      interrupted.push(job);
    }
    if (interrupted.length) await this.#state.saveJobs();
    return interrupted;
  }

  list(): Job[] {
    return this.#state.jobs.map((job) => ({ ...job }));
  }

  get(id: string): Job | undefined {
    return this.#state.jobs.find((job) => job.id === id);
  }

  /** Resolves when the job has ended (any final state). */
  async waitFor(id: string): Promise<Job> {
    await this.#live.get(id)?.done;
    const job = this.get(id);
    if (!job) throw new Error(`No job ${id}.`);
    return { ...job };
  }

  /** Whether a job is running or queued (used to keep plan runs from overlapping). */
  isActive(id: string): boolean {
    return this.#live.has(id);
  }

  start(spec: JobSpec): Job {
    const record: Job = {
      id: randomUUID(),
      kind: spec.kind,
      state: 'queued',
      title: spec.title,
      startedAt: null,
      endedAt: null,
      doneBytes: 0,
      totalBytes: 0,
      bytesPerSecond: 0,
      etaSeconds: null,
      container: null,
      units: null,
      unitSize: null,
      error: null,
      failureKind: null,
      result: spec.detail ? { ...spec.detail } : null,
      owner: spec.owner ?? null,
    };
    let finish = () => {};
    const done = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const live: LiveJob = {
      record,
      spec,
      abort: new AbortController(),
      interruptedBy: null,
      lastEmit: 0,
      emitTimer: null,
      sampleAt: 0,
      sampleBytes: 0,
      done,
      finish,
    };
    this.#live.set(record.id, live);
    this.#state.jobs.push(record);
    this.#trimFinished();
    void this.#state.saveJobs().catch(() => {});
    this.#emitNow(live);
    const lockKey = WRITER_KINDS.has(spec.kind) ? spec.repo : null;
    if (lockKey) {
      const queue = this.#writerQueues.get(lockKey) ?? [];
      queue.push(record.id);
      this.#writerQueues.set(lockKey, queue);
      if (queue.length === 1) void this.#run(live, lockKey);
    } else {
      void this.#run(live, null);
    }
    return { ...record };
  }

  /** Cancels a queued or running job; the job ends 'cancelled' once its code has stopped. */
  cancel(id: string): 'cancelling' | 'not-found' | 'finished' {
    const live = this.#live.get(id);
    if (!live) return this.get(id) ? 'finished' : 'not-found';
    live.abort.abort(new JobCancelledError(id));
    if (live.record.state === 'queued') {
      const lockKey = WRITER_KINDS.has(live.spec.kind) ? live.spec.repo : null;
      if (lockKey) {
        const queue = this.#writerQueues.get(lockKey) ?? [];
        this.#writerQueues.set(
          lockKey,
          queue.filter((queued) => queued !== id),
        );
      }
      this.#end(live, live.interruptedBy ? 'interrupted' : 'cancelled', live.interruptedBy, null);
    }
    return 'cancelling';
  }

  /**
   * Stops every job because the engine stops; they end 'interrupted' (to be run again), and writers leave
   * the repository as their own cancellation does. Waits until they have stopped.
   */
  async interruptAll(reason: string): Promise<void> {
    const pending = [...this.#live.values()];
    for (const live of pending) {
      live.interruptedBy = reason;
      this.cancel(live.record.id);
    }
    await Promise.all(pending.map((live) => live.done));
  }

  async #run(live: LiveJob, lockKey: string | null): Promise<void> {
    const { record, spec } = live;
    if (live.abort.signal.aborted) return;
    record.state = 'running';
    record.startedAt = this.#isoNow();
    live.sampleAt = this.#clock.now();
    void this.#state.saveJobs().catch(() => {});
    this.#emitNow(live);
    const context: JobContext = {
      id: record.id,
      signal: live.abort.signal,
      progress: (update) => this.#progress(live, update),
    };
    try {
      // A job that returns has done its work, even if a cancel came too late to stop it; to stop, it throws.
      const result = await spec.run(context);
      this.#end(live, 'succeeded', null, result);
    } catch (error) {
      if (live.interruptedBy) this.#end(live, 'interrupted', live.interruptedBy, null);
      else if (live.abort.signal.aborted) this.#end(live, 'cancelled', null, null);
      else {
        // Damage found keeps its report in the job's result: what is damaged is the finding, not a crash.
        const report = error instanceof DamageError ? error.report : null;
        this.#end(live, 'failed', (error as Error)?.message ?? String(error), report, failureKindOf(error));
      }
    } finally {
      if (lockKey) this.#startNextWriter(lockKey);
    }
  }

  #startNextWriter(lockKey: string): void {
    const queue = (this.#writerQueues.get(lockKey) ?? []).slice(1);
    if (queue.length === 0) {
      this.#writerQueues.delete(lockKey);
      return;
    }
    this.#writerQueues.set(lockKey, queue);
    const next = this.#live.get(queue[0]!);
    if (next) void this.#run(next, lockKey);
  }

  #progress(live: LiveJob, update: JobProgress): void {
    const { record } = live;
    if (record.state !== 'running') return;
    if (update.doneBytes !== undefined) record.doneBytes = update.doneBytes;
    if (update.totalBytes !== undefined) record.totalBytes = update.totalBytes;
    if (update.container !== undefined) record.container = update.container;
    if (update.units !== undefined) record.units = update.units;
    if (update.unitSize !== undefined) record.unitSize = update.unitSize;
    if (update.detail) record.result = { ...(record.result ?? {}), ...update.detail };
    const at = this.#clock.now();
    // Rate over the last second or so, so the figure follows the current speed.
    if (at - live.sampleAt >= 1000) {
      record.bytesPerSecond = Math.max(
        0,
        ((record.doneBytes - live.sampleBytes) * 1000) / (at - live.sampleAt),
      );
      live.sampleAt = at;
      live.sampleBytes = record.doneBytes;
    } else if (record.bytesPerSecond === 0 && at > live.sampleAt) {
      const elapsed = at - Date.parse(record.startedAt ?? this.#isoNow());
      if (elapsed > 0) record.bytesPerSecond = (record.doneBytes * 1000) / elapsed;
    }
    record.etaSeconds =
      record.bytesPerSecond > 0 && record.totalBytes >= record.doneBytes
        ? Math.round((record.totalBytes - record.doneBytes) / record.bytesPerSecond)
        : null;
    this.#emitThrottled(live);
  }

  #end(
    live: LiveJob,
    state: Job['state'],
    error: string | null,
    result: Record<string, unknown> | null,
    failureKind: FailureKind | null = null,
  ): void {
    const { record } = live;
    record.state = state;
    record.endedAt = this.#isoNow();
    record.error = state === 'cancelled' ? `Cancelled at ${record.endedAt}.` : error;
    record.failureKind = state === 'failed' ? (failureKind ?? 'failure') : null;
    record.etaSeconds = null;
    if (result) record.result = { ...(record.result ?? {}), ...result };
    if (live.emitTimer) this.#clock.clearTimeout(live.emitTimer);
    live.emitTimer = null;
    this.#live.delete(record.id);
    void this.#state.saveJobs().catch(() => {});
    this.#emitNow(live);
    live.finish();
  }

  #emitNow(live: LiveJob): void {
    live.lastEmit = this.#clock.now();
    this.#events.emit('job.updated', { ...live.record }, live.record.owner ?? null);
  }

  #emitThrottled(live: LiveJob): void {
    const wait = live.lastEmit + PROGRESS_INTERVAL_MS - this.#clock.now();
    if (wait <= 0) {
      this.#emitNow(live);
      return;
    }
    // Trailing event so the last progress before a pause is not lost.
    live.emitTimer ??= this.#clock.setTimeout(() => {
      live.emitTimer = null;
      if (this.#live.has(live.record.id)) this.#emitNow(live);
    }, wait);
  }

  #trimFinished(): void {
    const finished = this.#state.jobs.filter((job) => !this.#live.has(job.id));
    const excess = finished.length - FINISHED_JOBS_KEPT;
    if (excess <= 0) return;
    const drop = new Set(finished.slice(0, excess).map((job) => job.id));
    this.#state.jobs = this.#state.jobs.filter((job) => !drop.has(job.id));
  }
}
