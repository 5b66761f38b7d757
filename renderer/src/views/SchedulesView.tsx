// Schedules and retention: when each plan runs next, how its last run went, pausing every schedule at once, and
// pruning a repository by a plan's retention (with a dry run that only says what would go).
import { ErrorNote } from '../components/ErrorNote.tsx';
import { JobOutcome } from '../components/JobOutcome.tsx';
import { formatAgo, formatTime } from '../format/units.ts';
import { useApp } from '../store/app-store.ts';
import { describeRetention } from './PlansView.tsx';

export function SchedulesView() {
  const plans = useApp((s) => s.plans);
  const paused = useApp((s) => s.schedulesPaused);
  const setPaused = useApp((s) => s.setSchedulesPaused);
  const pruneRepo = useApp((s) => s.pruneRepo);
  return (
    <section className="view" aria-labelledby="schedules-title">
      <header className="view-head row">
        <div>
          <h2 id="schedules-title">Schedules &amp; retention</h2>
          <p className="muted">Schedules run in the engine, also while this window is closed.</p>
        </div>
        <label className="switch">
          <input type="checkbox" checked={paused} onChange={(e) => void setPaused(e.target.checked)} />
          Pause all schedules
        </label>
      </header>
      <ErrorNote place="schedules" />
      <ErrorNote place="prune" />
      <div className="card">
        <table className="data-table">
          <thead>
            <tr>
              <th>Plan</th>
              <th>Schedule</th>
              <th>Next run</th>
              <th>Last run</th>
              <th>Retention</th>
              <th>
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {plans.length === 0 && (
              <tr>
                <td colSpan={6} className="muted">
                  No plans. Create one under Backup plans.
                </td>
              </tr>
            )}
            {plans.map((plan) => (
              <tr key={plan.id}>
                <td>
                  <strong>{plan.name}</strong>
                  <div className="muted mono small">{plan.source}</div>
                </td>
                <td>{plan.schedule ?? 'Manual only'}</td>
                <td>
                  {!plan.enabled || paused ? (
                    <span className="muted">paused</span>
                  ) : plan.nextRun ? (
                    formatTime(plan.nextRun)
                  ) : (
                    '—'
                  )}
                </td>
                <td>
                  {plan.lastRun ? (
                    <span className={plan.lastRun.ok ? 'ok' : 'bad'} title={plan.lastRun.message}>
                      {plan.lastRun.ok ? 'OK' : 'Failed'} {formatAgo(plan.lastRun.time)}
                    </span>
                  ) : (
                    <span className="muted">never</span>
                  )}
                </td>
                <td>{describeRetention(plan.retention)}</td>
                <td className="actions">
                  <button type="button" onClick={() => void pruneRepo(plan.repo, plan.retention, true)}>
                    Preview prune
                  </button>
                  <button type="button" onClick={() => void pruneRepo(plan.repo, plan.retention, false)}>
                    Prune now
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <JobOutcome kind="prune" label="Prune progress" />
      </div>
    </section>
  );
}
