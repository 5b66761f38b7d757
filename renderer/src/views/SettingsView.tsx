// Settings: theme, the repositories this window works with, and the engine link.
import { useState } from 'react';
import { S3RepositoryForm } from '../components/S3RepositoryForm.tsx';
import { useApp } from '../store/app-store.ts';
import type { ThemeChoice } from '../store/ui-slice.ts';

export function SettingsView() {
  const theme = useApp((s) => s.theme);
  const setTheme = useApp((s) => s.setTheme);
  const repos = useApp((s) => s.repos);
  const currentRepo = useApp((s) => s.currentRepo);
  const addRepo = useApp((s) => s.addRepo);
  const removeRepo = useApp((s) => s.removeRepo);
  const checkS3 = useApp((s) => s.checkS3);
  const setCurrentRepo = useApp((s) => s.setCurrentRepo);
  const connection = useApp((s) => s.connection);
  const version = useApp((s) => s.engineVersion);
  const privileged = useApp((s) => s.enginePrivileged);
  const [newRepo, setNewRepo] = useState('');
  return (
    <section className="view" aria-labelledby="settings-title">
      <header className="view-head">
        <h2 id="settings-title">Settings</h2>
      </header>
      <div className="settings-grid">
        <section className="card" aria-labelledby="theme-title">
          <h3 id="theme-title">Appearance</h3>
          <fieldset className="segmented" aria-label="Theme">
            {(['system', 'light', 'dark'] as ThemeChoice[]).map((choice) => (
              <button
                key={choice}
                type="button"
                aria-pressed={theme === choice}
                onClick={() => setTheme(choice)}
              >
                {choice === 'system' ? 'Follow system' : choice[0]!.toUpperCase() + choice.slice(1)}
              </button>
            ))}
          </fieldset>
        </section>
        <section className="card" aria-labelledby="repos-title">
          <h3 id="repos-title">Repositories</h3>
          <ul className="plain repo-list" aria-label="Repositories">
            {repos.length === 0 && <li className="muted">None yet.</li>}
            {repos.map((repo) => (
              <li key={repo} className="row">
                <span className="mono grow">{repo}</span>
                {repo === currentRepo ? (
                  <span className="badge accent">Current</span>
                ) : (
                  <button type="button" onClick={() => setCurrentRepo(repo)}>
                    Use
                  </button>
                )}
                <button
                  type="button"
                  className="link"
                  onClick={() => removeRepo(repo)}
                  aria-label={`Forget ${repo}`}
                >
                  Forget
                </button>
              </li>
            ))}
          </ul>
          <form
            className="row"
            onSubmit={(e) => {
              e.preventDefault();
              addRepo(newRepo);
              setNewRepo('');
            }}
          >
            <input
              className="grow"
              aria-label="Repository path"
              value={newRepo}
              onChange={(e) => setNewRepo(e.target.value)}
              placeholder="/srv/backups/laptop"
            />
            <button type="submit" disabled={!newRepo.trim()}>
              Add
            </button>
          </form>
          <p className="muted small">
            Forgetting a repository only removes it from this list; nothing is deleted.
          </p>
          <h4>S3-compatible object storage</h4>
          <S3RepositoryForm check={checkS3} onAdd={addRepo} />
        </section>
        <section className="card" aria-labelledby="engine-title">
          <h3 id="engine-title">Engine</h3>
          <dl className="facts">
            <div>
              <dt>Link</dt>
              <dd>
                {connection.status} via {connection.transport === 'bridge' ? 'the desktop app' : 'WebSocket'}
              </dd>
            </div>
            <div>
              <dt>Version</dt>
              <dd>{version ?? '—'}</dd>
            </div>
            <div>
              <dt>Privileges</dt>
              <dd>
                {privileged === null
                  ? '—'
                  : privileged
                    ? 'Root: can read and write devices'
                    : 'Unprivileged: image files only'}
              </dd>
            </div>
          </dl>
        </section>
      </div>
    </section>
  );
}
