// Copy progress of one job (bar, bytes, rate, ETA), updated in place from a store subscription.
import { useRef } from 'react';
import { formatBytes, formatDuration, formatPercent, formatRate } from '../format/units.ts';
import { useStoreEffect } from './use-store-effect.ts';

export function JobProgress({ jobId, label = 'Copy progress' }: { jobId: string; label?: string }) {
  const barRef = useRef<HTMLDivElement>(null);
  const fillRef = useRef<HTMLDivElement>(null);
  const bytesRef = useRef<HTMLSpanElement>(null);
  const rateRef = useRef<HTMLSpanElement>(null);
  const etaRef = useRef<HTMLSpanElement>(null);

  useStoreEffect(
    (s) => s.jobs[jobId],
    (job) => {
      if (!job || !barRef.current) return;
      const total = Math.max(job.totalBytes, job.doneBytes, 0);
      const percent = formatPercent(job.doneBytes, total);
      barRef.current.setAttribute('aria-valuemax', String(total));
      barRef.current.setAttribute('aria-valuenow', String(job.doneBytes));
      barRef.current.setAttribute(
        'aria-valuetext',
        `${percent}, ${formatBytes(job.doneBytes)} of ${formatBytes(total)}`,
      );
      if (fillRef.current)
        fillRef.current.style.width = total > 0 ? `${(job.doneBytes / total) * 100}%` : '0';
      if (bytesRef.current)
        bytesRef.current.textContent = `${formatBytes(job.doneBytes)} of ${formatBytes(total)} · ${percent}`;
      if (rateRef.current)
        rateRef.current.textContent = job.state === 'running' ? formatRate(job.bytesPerSecond) : '—';
      if (etaRef.current)
        etaRef.current.textContent = job.state === 'running' ? formatDuration(job.etaSeconds) : '—';
    },
    [jobId],
  );

  return (
    <div className="job-progress">
      <div ref={barRef} className="progress" role="progressbar" aria-label={label} aria-valuemin={0}>
        <div ref={fillRef} className="progress-fill" />
      </div>
      <dl className="figures">
        <div>
          <dt>Copied</dt>
          <dd ref={bytesRef}>—</dd>
        </div>
        <div>
          <dt>Rate</dt>
          <dd ref={rateRef}>—</dd>
        </div>
        <div>
          <dt>Time left</dt>
          <dd ref={etaRef}>—</dd>
        </div>
      </dl>
    </div>
  );
}
