// Repository health: what the points of the current repository add up to, which are damaged or interrupted, and
// verification (structure only, or every byte read back and checked).
import { ErrorNote } from '../components/ErrorNote.tsx';
import { JobOutcome } from '../components/JobOutcome.tsx';
import { formatBytes, formatTime } from '../format/units.ts';
import { useApp } from '../store/app-store.ts';

export function HealthView() {
  const currentRepo = useApp((s) => s.currentRepo);
  const points = useApp((s) => s.points);
  const startVerify = useApp((s) => s.startVerify);
  const complete = points.filter((p) => p.complete);
  const interrupted = points.filter((p) => !p.complete);
  const damaged = points.filter((p) => p.verify === 'damaged');
  const verified = points.filter((p) => p.verify === 'ok');
  const stored = points.reduce((sum, p) => sum + p.storedBytes, 0);
  const captured = points.reduce((sum, p) => sum + p.usedBytes, 0);
  return (
    <section className="view" aria-labelledby="health-title">
      <header className="view-head">
        <h2 id="health-title">Repository health</h2>
        <p className="muted mono">{currentRepo ?? 'No repository chosen'}</p>
      </header>
      <div className="stat-grid">
        <div className="card stat">
          <span className="stat-value">{complete.length}</span>
          <span className="muted">restore points</span>
        </div>
        <div className="card stat">
          <span className="stat-value">{verified.length}</span>
          <span className="muted">verified</span>
        </div>
        <div className={`card stat${damaged.length ? ' bad' : ''}`}>
          <span className="stat-value">{damaged.length}</span>
          <span className="muted">damaged</span>
        </div>
        <div className="card stat">
          <span className="stat-value">{interrupted.length}</span>
          <span className="muted">interrupted</span>
        </div>
        <div className="card stat">
          <span className="stat-value">{formatBytes(stored)}</span>
          <span className="muted">stored for {formatBytes(captured)} captured</span>
        </div>
      </div>
      <section className="card" aria-labelledby="verify-title">
        <h3 id="verify-title">Verify</h3>
        <p className="muted">
          Structure checks every manifest and that every chunk exists; every byte also reads each chunk back
          and checks its hash (slower, reads the whole repository).
        </p>
        <div className="card-actions">
          <button
            type="button"
            disabled={!currentRepo}
            onClick={() => currentRepo && void startVerify(currentRepo, false)}
          >
            Verify structure
          </button>
          <button
            type="button"
            className="primary"
            disabled={!currentRepo}
            onClick={() => currentRepo && void startVerify(currentRepo, true)}
          >
            Verify every byte
          </button>
        </div>
        <ErrorNote place="verify" />
        <JobOutcome kind="verify" label="Verify progress" />
      </section>
      {(damaged.length > 0 || interrupted.length > 0) && (
        <section className="card" aria-labelledby="attention-title">
          <h3 id="attention-title">Needs attention</h3>
          <ul className="plain">
            {damaged.map((p) => (
              <li key={p.id} className="bad">
                {formatTime(p.time)} — damaged: restore from another point; prune it once a newer point is
                verified.
              </li>
            ))}
            {interrupted.map((p) => (
              <li key={p.id}>
                {formatTime(p.time)} — interrupted backup of <span className="mono">{p.source}</span>: run the
                backup again.
              </li>
            ))}
          </ul>
        </section>
      )}
    </section>
  );
}
