// The job being followed: for a backup the block map, copy progress, throughput and the intermediate container;
// for other jobs their progress. Recent jobs are listed to switch between them.
import { useEffect } from 'react';
import { useShallow } from 'zustand/react/shallow';
import { BlockMap } from '../components/BlockMap.tsx';
import { ContainerMeter } from '../components/ContainerMeter.tsx';
import { ErrorNote } from '../components/ErrorNote.tsx';
import { ResultFacts } from '../components/JobOutcome.tsx';
import { JobProgress } from '../components/JobProgress.tsx';
import { ThroughputChart } from '../components/ThroughputChart.tsx';
import { formatAgo, formatBytes } from '../format/units.ts';
import { useApp } from '../store/app-store.ts';
import { BLOCK_MAP_CELLS } from '../store/bind-engine.ts';
import { isActive } from '../store/jobs-slice.ts';

const stateLabel: Record<string, string> = {
  queued: 'Queued',
  running: 'Running',
  succeeded: 'Done',
  failed: 'Failed',
  cancelled: 'Cancelled',
  interrupted: 'Interrupted',
};

function JobHeader({ jobId }: { jobId: string }) {
  // Only the fields that change rarely: progress figures update in place elsewhere.
  const job = useApp(
    useShallow((s) => {
      const j = s.jobs[jobId];
      return j
        ? { title: j.title, kind: j.kind, state: j.state, error: j.error, startedAt: j.startedAt }
        : null;
    }),
  );
  const cancelJob = useApp((s) => s.cancelJob);
  if (!job) return null;
  const active = job.state === 'queued' || job.state === 'running';
  return (
    <header className="view-head row">
      <div>
        <div className="title-row">
          <h2 id="live-title">{job.title}</h2>
          <span className={`badge job-${job.state}`}>{stateLabel[job.state] ?? job.state}</span>
        </div>
        <p className="muted">
          {job.kind} · started {job.startedAt ? formatAgo(job.startedAt) : 'soon'}
        </p>
      </div>
      {active && (
        <button type="button" className="danger-outline" onClick={() => void cancelJob(jobId)}>
          Cancel {job.kind}
        </button>
      )}
      {job.error && (
        <div className="error-note wide" role="alert">
          {job.error}
        </div>
      )}
    </header>
  );
}

/** What the job reported: shown when it ends, or at once for an instant restore (the device to use). */
function LiveResult({ jobId }: { jobId: string }) {
  const result = useApp((s) => s.jobs[jobId]?.result ?? null);
  return <ResultFacts result={result} />;
}

function RecentJobs() {
  const jobs = useApp(useShallow((s) => s.jobOrder.slice(0, 8).map((id) => s.jobs[id]!)));
  const liveJobId = useApp((s) => s.liveJobId);
  const followJob = useApp((s) => s.followJob);
  if (jobs.length === 0) return null;
  return (
    <section className="card recent-jobs" aria-labelledby="recent-title">
      <h3 id="recent-title">Recent jobs</h3>
      <ul>
        {jobs.map((job) => (
          <li key={job.id}>
            <button
              type="button"
              className={`job-row${job.id === liveJobId ? ' current' : ''}`}
              aria-current={job.id === liveJobId}
              onClick={() => followJob(job.id)}
            >
              <span className={`dot job-${job.state}`} aria-hidden="true" />
              <span className="grow">{job.title}</span>
              <span className="muted small">{stateLabel[job.state]}</span>
              <span className="muted small">{formatBytes(job.doneBytes)}</span>
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

export function LiveJobView() {
  const liveJobId = useApp((s) => s.liveJobId);
  const kind = useApp((s) => (s.liveJobId ? s.jobs[s.liveJobId]?.kind : undefined));
  const running = useApp((s) => {
    const job = s.liveJobId ? s.jobs[s.liveJobId] : undefined;
    return job ? isActive(job) : false;
  });
  const hasContainer = useApp((s) => (s.liveJobId ? !!s.jobs[s.liveJobId]?.container : false));
  const hasMap = useApp((s) => (s.liveJobId ? !!s.blockMaps[s.liveJobId] : false));
  const subscribeBlockMap = useApp((s) => s.subscribeBlockMap);
  const unitSize = useApp((s) => (s.liveJobId ? (s.jobs[s.liveJobId]?.unitSize ?? null) : null));

  useEffect(() => {
    if (liveJobId && kind === 'backup' && running) void subscribeBlockMap(liveJobId, BLOCK_MAP_CELLS);
  }, [liveJobId, kind, running, subscribeBlockMap]);

  if (!liveJobId) {
    return (
      <section className="view" aria-labelledby="live-title">
        <header className="view-head">
          <h2 id="live-title">Live job</h2>
        </header>
        <p className="empty">No job is running. Start a backup from Drives or Backup plans.</p>
        <RecentJobs />
      </section>
    );
  }
  return (
    <section className="view" aria-labelledby="live-title">
      <JobHeader jobId={liveJobId} />
      <ErrorNote place={`cancel:${liveJobId}`} />
      <ErrorNote place={`blockmap:${liveJobId}`} />
      <div className="live-grid">
        {(kind === 'backup' || hasMap) && (
          <section className="card map-card" aria-labelledby="map-title">
            <h3 id="map-title">Blocks</h3>
            <BlockMap jobId={liveJobId} unitSize={unitSize} height={330} />
          </section>
        )}
        <section className="card" aria-labelledby="progress-title">
          <h3 id="progress-title">Progress</h3>
          <JobProgress
            jobId={liveJobId}
            label={kind === 'backup' ? 'Copy progress' : `${kind ?? 'Job'} progress`}
          />
          <ThroughputChart jobId={liveJobId} />
          <LiveResult jobId={liveJobId} />
        </section>
        {(kind === 'backup' || hasContainer) && (
          <section className="card" aria-labelledby="container-title">
            <h3 id="container-title">Intermediate container</h3>
            <p className="muted small">
              Old data of blocks written before they were copied waits here until the copier takes it.
            </p>
            <ContainerMeter jobId={liveJobId} />
          </section>
        )}
      </div>
      <RecentJobs />
    </section>
  );
}
