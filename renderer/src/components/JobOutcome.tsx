// The latest job of one kind (verify, prune, drill…) where it was started: progress while it runs, then how it
// ended — the engine's error in words, or the facts of its result.
import { useShallow } from 'zustand/react/shallow';
import type { JobKind } from '../../../protocol/model.ts';
import { formatAgo, formatBytes } from '../format/units.ts';
import { useApp } from '../store/app-store.ts';
import { isActive } from '../store/jobs-slice.ts';
import { JobProgress } from './JobProgress.tsx';

function describeValue(key: string, value: unknown): string {
  if (typeof value === 'number') return /bytes$/i.test(key) ? formatBytes(value) : value.toLocaleString();
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const simple = value.every((v) => typeof v === 'string' || typeof v === 'number');
    return simple && value.length <= 4 ? value.join(', ') || 'none' : `${value.length}`;
  }
  return value === null || value === undefined ? '—' : JSON.stringify(value).slice(0, 80);
}

/** "removedPoints" → "Removed points". */
function labelOf(key: string): string {
  const words = key.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The facts a job reported in its result (bytes written, points removed, the device of an instant restore…). */
export function ResultFacts({ result }: { result: Record<string, unknown> | null }) {
  if (!result || Object.keys(result).length === 0) return null;
  return (
    <dl className="facts">
      {Object.entries(result)
        .slice(0, 9)
        .map(([key, value]) => (
          <div key={key}>
            <dt>{labelOf(key)}</dt>
            <dd>{describeValue(key, value)}</dd>
          </div>
        ))}
    </dl>
  );
}

export function JobOutcome({ kind, label }: { kind: JobKind; label: string }) {
  const job = useApp(
    useShallow((s) => {
      const id = s.jobOrder.find((jobId) => s.jobs[jobId]?.kind === kind);
      const found = id ? s.jobs[id] : undefined;
      return found
        ? {
            id: found.id,
            title: found.title,
            state: found.state,
            error: found.error,
            endedAt: found.endedAt,
            result: found.result,
            active: isActive(found),
          }
        : null;
    }),
  );
  if (!job) return null;
  return (
    <section className="job-outcome" aria-label={`Latest ${kind}`}>
      <div className="row">
        <strong>{job.title}</strong>
        <span className={`badge job-${job.state}`}>{job.state}</span>
        {job.endedAt && <span className="muted small">{formatAgo(job.endedAt)}</span>}
      </div>
      {job.active && <JobProgress jobId={job.id} label={label} />}
      {job.error && (
        <div className="error-note" role="alert">
          {job.error}
        </div>
      )}
      {!job.active && <ResultFacts result={job.result} />}
    </section>
  );
}
