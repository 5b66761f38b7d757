// Jobs (backup, restore, verify, prune, drill) as the engine reports them, the job the Live view follows, and a
// short history of throughput per job for its chart. job.updated events arrive often: the slice replaces only the
// one job, so components selecting other fields do not re-render.
import type { ContainerSpec, Job } from '../../../protocol/model.ts';
import type { SliceCreator } from './app-store.ts';

export interface ThroughputSample {
  /** Milliseconds since the epoch, as received. */
  at: number;
  bytesPerSecond: number;
}

/** Samples kept per job: ~4 minutes at 4 Hz. */
export const THROUGHPUT_SAMPLES = 1000;

export interface JobsSlice {
  jobs: Record<string, Job>;
  /** Job ids, newest first. */
  jobOrder: string[];
  /** The job the Live view shows. */
  liveJobId: string | null;
  throughput: Record<string, ThroughputSample[]>;
  loadJobs(): Promise<void>;
  applyJob(job: Job): void;
  followJob(id: string | null): void;
  cancelJob(id: string): Promise<void>;
  /**
   * `afresh`: an interrupted backup of the source is not taken over (its units are read again);
   * `allowInconsistent`: back up a disk in use without the tap anyway (a crash-consistent point).
   */
  startBackup(
    source: string,
    repo: string,
    container?: ContainerSpec,
    options?: { afresh?: boolean; allowInconsistent?: boolean },
  ): Promise<Job | null>;
  startVerify(repo: string, readData: boolean): Promise<Job | null>;
  startDrill(repo: string, point: string): Promise<Job | null>;
}

export function isActive(job: Job): boolean {
  return job.state === 'queued' || job.state === 'running';
}

export const createJobsSlice: SliceCreator<JobsSlice> = (set, get, engine) => ({
  jobs: {},
  jobOrder: [],
  liveJobId: null,
  throughput: {},
  async loadJobs() {
    const jobs = await get().attempt('jobs', () => engine.call('jobs.list', {}));
    if (!jobs) return;
    for (const job of jobs) get().applyJob(job);
    if (!get().liveJobId) {
      const running = jobs.find(isActive);
      if (running) get().followJob(running.id);
    }
  },
  applyJob(job) {
    const { jobs, jobOrder, throughput } = get();
    const known = job.id in jobs;
    let samples = throughput[job.id];
    if (job.state === 'running') {
      samples = [...(samples ?? []), { at: Date.now(), bytesPerSecond: job.bytesPerSecond }];
      if (samples.length > THROUGHPUT_SAMPLES) samples = samples.slice(-THROUGHPUT_SAMPLES);
    }
    set({
      jobs: { ...jobs, [job.id]: job },
      jobOrder: known ? jobOrder : [job.id, ...jobOrder],
      throughput: samples ? { ...throughput, [job.id]: samples } : throughput,
    });
    const previous = jobs[job.id];
    // A job that starts while the Live view follows nothing running (e.g. a scheduled backup) is followed.
    const followed = get().liveJobId ? jobs[get().liveJobId!] : undefined;
    if (!known && isActive(job) && (!followed || !isActive(followed))) get().followJob(job.id);
    if (previous && isActive(previous) && !isActive(job)) {
      // A finished backup or restore changes what the timeline and the drives show.
      if (job.kind === 'backup' || job.kind === 'verify' || job.kind === 'drill' || job.kind === 'prune') {
        void get().loadPoints();
      }
      if (job.state === 'succeeded') get().notify('ok', `${job.title}: done.`);
      else if (job.state === 'failed')
        get().notify('error', `${job.title} failed: ${job.error ?? 'no reason given'}`);
      else get().notify('info', `${job.title}: ${job.state}.`);
    }
  },
  followJob(id) {
    set({ liveJobId: id });
  },
  async cancelJob(id) {
    await get().attempt(`cancel:${id}`, () => engine.call('jobs.cancel', { id }));
  },
  async startBackup(source, repo, container, options) {
    const job = await get().attempt('backup', () =>
      engine.call('backup.start', {
        source,
        repo,
        ...(container ? { container } : {}),
        ...(options?.afresh ? { noResume: true } : {}),
        ...(options?.allowInconsistent ? { allowInconsistent: true } : {}),
      }),
    );
    if (job) {
      get().applyJob(job);
      get().followJob(job.id);
      get().setView('live');
    }
    return job;
  },
  async startVerify(repo, readData) {
    const job = await get().attempt('verify', () => engine.call('verify.start', { repo, readData }));
    if (job) get().applyJob(job);
    return job;
  },
  async startDrill(repo, point) {
    const job = await get().attempt(`drill:${point}`, () => engine.call('drill.start', { repo, point }));
    if (job) get().applyJob(job);
    return job;
  },
});
