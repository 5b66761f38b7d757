// Backup plans: what to back up, where to, when, what to keep, how big an intermediate container, and how the
// repository is protected. The passphrase never passes through the UI: the engine reads it from its environment.
import { type FormEvent, useState } from 'react';
import type { ContainerSpec, Plan, Retention } from '../../../protocol/model.ts';
import { ErrorNote } from '../components/ErrorNote.tsx';
import { formatBytes } from '../format/units.ts';
import { useApp } from '../store/app-store.ts';
import type { PlanDraft } from '../store/plans-slice.ts';

const schedulePresets = [
  { value: '', label: 'Manual only' },
  { value: '@hourly', label: 'Every hour' },
  { value: 'daily 02:30', label: 'Daily at 02:30' },
  { value: 'weekly mon 03:00', label: 'Weekly, Monday 03:00' },
];

const retentionFields: { key: keyof Retention; label: string }[] = [
  { key: 'keepLast', label: 'Last' },
  { key: 'keepHourly', label: 'Hourly' },
  { key: 'keepDaily', label: 'Daily' },
  { key: 'keepWeekly', label: 'Weekly' },
  { key: 'keepMonthly', label: 'Monthly' },
  { key: 'keepYearly', label: 'Yearly' },
];

const MiB = 1024 * 1024;

function emptyDraft(source: string, repo: string): PlanDraft {
  return {
    id: '',
    name: '',
    source,
    repo,
    schedule: 'daily 02:30',
    retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 },
    container: { kind: 'memory', capacityBytes: 256 * MiB },
    enabled: true,
  };
}

export function describeRetention(retention: Retention): string {
  const parts = retentionFields
    .filter((f) => (retention[f.key] ?? 0) > 0)
    .map((f) => `${retention[f.key]} ${f.label.toLowerCase()}`);
  return parts.length ? `keep ${parts.join(', ')}` : 'keep everything';
}

function PlanEditor({ initial, onDone }: { initial: PlanDraft; onDone(): void }) {
  const drives = useApp((s) => s.drives);
  const repos = useApp((s) => s.repos);
  const savePlan = useApp((s) => s.savePlan);
  const createRepo = useApp((s) => s.initRepo);
  const [draft, setDraft] = useState<PlanDraft>(initial);
  const [customSchedule, setCustomSchedule] = useState(
    !!initial.schedule && !schedulePresets.some((p) => p.value === initial.schedule),
  );
  const [encrypted, setEncrypted] = useState(true);
  const [repoMessage, setRepoMessage] = useState<string | null>(null);
  const update = (patch: Partial<PlanDraft>) => setDraft({ ...draft, ...patch });
  const updateContainer = (patch: Partial<ContainerSpec>) =>
    update({ container: { ...draft.container, ...patch } });

  async function submit(event: FormEvent): Promise<void> {
    event.preventDefault();
    const saved = await savePlan({ ...draft, name: draft.name.trim() || `Back up ${draft.source}` });
    if (saved) onDone();
  }

  async function initRepo(): Promise<void> {
    setRepoMessage(null);
    const result = await createRepo(draft.repo, encrypted);
    if (result) setRepoMessage(`Created ${result.repo}${encrypted ? ', encrypted' : ''}.`);
  }

  return (
    <form className="card plan-editor" onSubmit={(e) => void submit(e)} aria-label="Backup plan">
      <h3>{initial.id ? `Edit ${initial.name}` : 'New backup plan'}</h3>
      <label>
        Name
        <input
          value={draft.name}
          onChange={(e) => update({ name: e.target.value })}
          placeholder="Laptop disk"
        />
      </label>
      <label>
        Source drive
        <select value={draft.source} onChange={(e) => update({ source: e.target.value })} required>
          <option value="">Choose a drive…</option>
          {drives.map((d) => (
            <option key={d.device} value={d.device}>
              {d.description || d.device} — {d.device} ({formatBytes(d.size)})
            </option>
          ))}
          {draft.source && !drives.some((d) => d.device === draft.source) && (
            <option value={draft.source}>{draft.source}</option>
          )}
        </select>
      </label>
      <fieldset>
        <legend>Repository</legend>
        <input
          aria-label="Repository"
          list="known-repos"
          value={draft.repo}
          onChange={(e) => update({ repo: e.target.value })}
          placeholder="/srv/backups/laptop"
          required
        />
        <datalist id="known-repos">
          {repos.map((r) => (
            <option key={r} value={r} />
          ))}
        </datalist>
        <div className="row">
          <label className="check">
            <input type="checkbox" checked={encrypted} onChange={(e) => setEncrypted(e.target.checked)} />
            Encrypt (recommended)
          </label>
          <button type="button" disabled={!draft.repo} onClick={() => void initRepo()}>
            Create repository
          </button>
        </div>
        <p className="muted small">
          The passphrase never passes through this window: the engine reads it from DISKLINE_PASSWORD or its
          --password-file. Keep a copy somewhere safe — without it the backups cannot be read.
        </p>
        {repoMessage && <p className="ok small">{repoMessage}</p>}
        <ErrorNote place="repo.init" />
      </fieldset>
      <fieldset>
        <legend>Schedule</legend>
        <select
          aria-label="Schedule"
          value={customSchedule ? 'custom' : (draft.schedule ?? '')}
          onChange={(e) => {
            if (e.target.value === 'custom') setCustomSchedule(true);
            else {
              setCustomSchedule(false);
              update({ schedule: e.target.value || null });
            }
          }}
        >
          {schedulePresets.map((p) => (
            <option key={p.value} value={p.value}>
              {p.label}
            </option>
          ))}
          <option value="custom">Custom (cron with seconds)…</option>
        </select>
        {customSchedule && (
          <input
            aria-label="Cron expression"
            value={draft.schedule ?? ''}
            onChange={(e) => update({ schedule: e.target.value || null })}
            placeholder="0 15 */4 * * *"
          />
        )}
        <label className="check">
          <input
            type="checkbox"
            checked={draft.enabled}
            onChange={(e) => update({ enabled: e.target.checked })}
          />
          Enabled
        </label>
      </fieldset>
      <fieldset>
        <legend>Retention — restore points to keep</legend>
        <div className="retention-grid">
          {retentionFields.map((field) => (
            <label key={field.key}>
              {field.label}
              <input
                type="number"
                min={0}
                value={draft.retention[field.key] ?? ''}
                onChange={(e) =>
                  update({
                    retention: {
                      ...draft.retention,
                      [field.key]: e.target.value === '' ? undefined : Math.max(0, Number(e.target.value)),
                    },
                  })
                }
              />
            </label>
          ))}
        </div>
      </fieldset>
      <fieldset>
        <legend>Intermediate container</legend>
        <div className="row">
          <select
            aria-label="Container kind"
            value={draft.container.kind}
            onChange={(e) => updateContainer({ kind: e.target.value as ContainerSpec['kind'] })}
          >
            <option value="memory">Memory</option>
            <option value="file">File</option>
            <option value="device">Partition or device</option>
          </select>
          <label className="inline">
            Size (MiB)
            <input
              type="number"
              min={1}
              value={Math.round((draft.container.capacityBytes ?? 0) / MiB)}
              onChange={(e) => updateContainer({ capacityBytes: Math.max(1, Number(e.target.value)) * MiB })}
            />
          </label>
        </div>
        {draft.container.kind !== 'memory' && (
          <input
            aria-label="Container path"
            value={draft.container.path ?? ''}
            onChange={(e) => updateContainer({ path: e.target.value })}
            placeholder={draft.container.kind === 'file' ? '/var/tmp/diskline.container' : '/dev/sdb2'}
            required
          />
        )}
        <p className="muted small">
          Holds old data of blocks written during the backup. Must not live on the disk being backed up.
        </p>
      </fieldset>
      <ErrorNote place="plan.save" />
      <div className="dialog-actions">
        <button type="button" onClick={onDone}>
          Cancel
        </button>
        <button type="submit" className="primary" disabled={!draft.source || !draft.repo}>
          Save plan
        </button>
      </div>
    </form>
  );
}

function PlanCard({ plan, onEdit }: { plan: Plan; onEdit(): void }) {
  const runPlan = useApp((s) => s.runPlan);
  const deletePlan = useApp((s) => s.deletePlan);
  return (
    <li className="card plan" aria-label={plan.name}>
      <header className="card-head">
        <h3>{plan.name}</h3>
        <span className={`badge${plan.enabled ? ' accent' : ''}`}>{plan.enabled ? 'Enabled' : 'Paused'}</span>
      </header>
      <dl className="facts">
        <div>
          <dt>Source</dt>
          <dd className="mono">{plan.source}</dd>
        </div>
        <div>
          <dt>Repository</dt>
          <dd className="mono">{plan.repo}</dd>
        </div>
        <div>
          <dt>Schedule</dt>
          <dd>{plan.schedule ?? 'Manual only'}</dd>
        </div>
        <div>
          <dt>Retention</dt>
          <dd>{describeRetention(plan.retention)}</dd>
        </div>
        <div>
          <dt>Container</dt>
          <dd>
            {plan.container.kind} ·{' '}
            {plan.container.capacityBytes ? formatBytes(plan.container.capacityBytes) : 'the whole partition'}
          </dd>
        </div>
        <div>
          <dt>Last run</dt>
          <dd className={plan.lastRun ? (plan.lastRun.ok ? 'ok' : 'bad') : 'muted'}>
            {plan.lastRun ? `${plan.lastRun.ok ? 'OK' : 'Failed'} — ${plan.lastRun.message}` : 'Never'}
          </dd>
        </div>
      </dl>
      <div className="card-actions">
        <button type="button" className="primary" onClick={() => void runPlan(plan.id)}>
          Run now
        </button>
        <button type="button" onClick={onEdit}>
          Edit
        </button>
        <button type="button" className="danger-outline" onClick={() => void deletePlan(plan.id)}>
          Delete
        </button>
      </div>
      <ErrorNote place={`plan.run:${plan.id}`} />
      <ErrorNote place={`plan.delete:${plan.id}`} />
    </li>
  );
}

export function PlansView() {
  const plans = useApp((s) => s.plans);
  const firstDrive = useApp((s) => s.drives.find((d) => !d.isSystem)?.device ?? s.drives[0]?.device ?? '');
  const currentRepo = useApp((s) => s.currentRepo ?? '');
  const [editing, setEditing] = useState<PlanDraft | null>(null);
  return (
    <section className="view" aria-labelledby="plans-title">
      <header className="view-head row">
        <div>
          <h2 id="plans-title">Backup plans</h2>
          <p className="muted">What to back up, where, when, and what to keep.</p>
        </div>
        <button
          type="button"
          className="primary"
          onClick={() => setEditing(emptyDraft(firstDrive, currentRepo))}
        >
          New plan
        </button>
      </header>
      <ErrorNote place="plans" />
      <div className="plans-layout">
        <ul className="plan-list" aria-label="Backup plans">
          {plans.length === 0 && <li className="empty">No plans yet.</li>}
          {plans.map((plan) => (
            <PlanCard
              key={plan.id}
              plan={plan}
              onEdit={() =>
                setEditing({
                  id: plan.id,
                  name: plan.name,
                  source: plan.source,
                  repo: plan.repo,
                  schedule: plan.schedule,
                  retention: plan.retention,
                  container: plan.container,
                  enabled: plan.enabled,
                })
              }
            />
          ))}
        </ul>
        {editing && (
          <PlanEditor key={editing.id || 'new'} initial={editing} onDone={() => setEditing(null)} />
        )}
      </div>
    </section>
  );
}
