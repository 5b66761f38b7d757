// What the tray shows, as plain data: the icon (idle / busy / attention), the tooltip with progress, and
// the menu for the current state. It folds the engine's events into a state and renders it; tray.ts turns
// the model into Electron's Tray and Menu. No Electron here, so every state is unit-tested as is.
import type { EventData } from '../protocol/messages.ts';
import type { Job, Plan } from '../protocol/model.ts';
import { nextBackupText } from './schedule-text.ts';

export type TrayIconState = 'idle' | 'busy' | 'attention';

export type EngineConnection =
  | { kind: 'connecting' }
  | { kind: 'connected'; privileged: boolean }
  /** `reason` says what happened and what works without the engine. */
  | { kind: 'offline'; reason: string };

export type TrayAction =
  | { kind: 'backupNow'; planId: string }
  | { kind: 'setSchedulesPaused'; paused: boolean }
  | { kind: 'openWindow' }
  | { kind: 'setStartAtLogin'; enabled: boolean }
  | { kind: 'quit' };

export type TrayMenuItem =
  | { type: 'separator' }
  | { type: 'normal'; label: string; enabled: boolean; action?: TrayAction; submenu?: TrayMenuItem[] }
  | { type: 'checkbox'; label: string; checked: boolean; enabled: boolean; action: TrayAction };

export type TrayView = { icon: TrayIconState; tooltip: string; menu: TrayMenuItem[] };

export type TrayViewOptions = { now: Date; startAtLogin: boolean; timeZone?: string };

/** A failure the user has not seen yet; opening the window acknowledges it. */
type Problem = { key: string; text: string; at: number };

const activeStates: ReadonlySet<Job['state']> = new Set(['queued', 'running']);
const failedStates: ReadonlySet<Job['state']> = new Set(['failed', 'interrupted']);

const jobVerb: Record<Job['kind'], string> = {
  backup: 'Backing up',
  restore: 'Restoring',
  verify: 'Verifying',
  prune: 'Pruning',
  mount: 'Mounting',
  drill: 'Test-restoring',
  copy: 'Copying',
};

/** Decimal units, one decimal place from MB up: the tooltip has little room. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB', 'PB'];
  let value = bytes;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function formatEta(seconds: number): string {
  if (seconds < 60) return 'less than a minute left';
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min left`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

/** "Backing up /dev/sda: 42% (1.2 GB of 2.9 GB), 3 min left". */
export function jobProgressText(job: Job): string {
  const verb = jobVerb[job.kind];
  if (job.state === 'queued') return `${verb} ${job.title}: waiting to start`;
  if (job.totalBytes <= 0) return `${verb} ${job.title}`;
  const percent = Math.min(100, Math.floor((job.doneBytes / job.totalBytes) * 100));
  const eta = job.etaSeconds === null ? '' : `, ${formatEta(job.etaSeconds)}`;
  return `${verb} ${job.title}: ${percent}% (${formatBytes(job.doneBytes)} of ${formatBytes(job.totalBytes)})${eta}`;
}

export class TrayState {
  connection: EngineConnection = { kind: 'connecting' };
  schedulesPaused = false;
  nextRun: string | null = null;
  plans: Plan[] = [];
  readonly #activeJobs = new Map<string, Job>();
  readonly #problems = new Map<string, Problem>();

  setConnection(connection: EngineConnection): void {
    this.connection = connection;
    // Jobs seen before a disconnect may have ended meanwhile; the engine's job list refills them.
    if (connection.kind !== 'connected') this.#activeJobs.clear();
  }

  setEngineStatus(status: { schedulesPaused: boolean; nextRun: string | null }): void {
    this.schedulesPaused = status.schedulesPaused;
    this.nextRun = status.nextRun;
  }

  setPlans(plans: Plan[]): void {
    this.plans = plans;
  }

  /** Folds a job.updated event (or a job from jobs.list) in. */
  jobUpdated(job: Job, at = Date.now()): void {
    if (activeStates.has(job.state)) {
      this.#activeJobs.set(job.id, job);
      return;
    }
    this.#activeJobs.delete(job.id);
    if (failedStates.has(job.state)) {
      const how = job.state === 'interrupted' ? 'was interrupted' : 'failed';
      const detail = job.error ? `: ${job.error}` : '';
      this.#problems.set(`job:${job.id}`, { key: `job:${job.id}`, text: `${job.title} ${how}${detail}`, at });
    }
  }

  planRan(event: EventData<'plan.ran'>, at = Date.now()): void {
    const key = `plan:${event.planId}`;
    if (event.ok) {
      // A plan that has since succeeded no longer needs the user's attention for its earlier failure.
      this.#problems.delete(key);
      return;
    }
    this.#problems.set(key, { key, text: `Backup "${event.name}" failed: ${event.message}`, at });
  }

  /** The user opened the window, where failures are shown in full. */
  acknowledge(): void {
    this.#problems.clear();
  }

  get activeJobs(): Job[] {
    return [...this.#activeJobs.values()];
  }

  get problems(): string[] {
    return [...this.#problems.values()].sort((a, b) => a.at - b.at).map((p) => p.text);
  }

  icon(): TrayIconState {
    if (this.activeJobs.some((j) => j.state === 'running')) return 'busy';
    if (this.connection.kind === 'offline' || this.#problems.size > 0) return 'attention';
    return 'idle';
  }

  view(options: TrayViewOptions): TrayView {
    const statusLines = this.#statusLines(options);
    return {
      icon: this.icon(),
      tooltip: ['Diskline', ...statusLines].join('\n'),
      menu: this.#menu(statusLines, options),
    };
  }

  #scheduleLine(options: TrayViewOptions): string {
    return nextBackupText({
      nextRun: this.nextRun,
      schedulesPaused: this.schedulesPaused,
      now: options.now,
      timeZone: options.timeZone,
    });
  }

  #statusLines(options: TrayViewOptions): string[] {
    const lines: string[] = [];
    if (this.connection.kind === 'connecting') lines.push('Connecting to the engine…');
    if (this.connection.kind === 'offline') lines.push(this.connection.reason);
    if (this.connection.kind === 'connected' && !this.connection.privileged) {
      lines.push('Limited mode: no administrator rights, browsing restore points only');
    }
    const jobs = this.activeJobs;
    lines.push(...jobs.map(jobProgressText));
    lines.push(...this.problems);
    if (this.connection.kind === 'connected' && jobs.length === 0 && this.#problems.size === 0) {
      lines.push(this.#scheduleLine(options));
    }
    return lines;
  }

  #backupNowItem(): TrayMenuItem {
    const connected = this.connection.kind === 'connected';
    const backupRunning = this.activeJobs.some((j) => j.kind === 'backup');
    const plans = this.plans.filter((p) => p.enabled);
    if (plans.length === 0) {
      return { type: 'normal', label: 'Back up now (no backup plan yet)', enabled: false };
    }
    const enabled = connected && !backupRunning;
    if (plans.length === 1) {
      return {
        type: 'normal',
        label: 'Back up now',
        enabled,
        action: { kind: 'backupNow', planId: plans[0]!.id },
      };
    }
    return {
      type: 'normal',
      label: 'Back up now',
      enabled,
      submenu: plans.map((plan) => ({
        type: 'normal',
        label: plan.name,
        enabled,
        action: { kind: 'backupNow', planId: plan.id },
      })),
    };
  }

  #menu(statusLines: string[], options: TrayViewOptions): TrayMenuItem[] {
    const connected = this.connection.kind === 'connected';
    const items: TrayMenuItem[] = statusLines.map((label) => ({ type: 'normal', label, enabled: false }));
    items.push({ type: 'separator' }, this.#backupNowItem());
    if (connected) {
      const scheduleLine = this.#scheduleLine(options);
      if (!statusLines.includes(scheduleLine))
        items.push({ type: 'normal', label: scheduleLine, enabled: false });
      items.push({
        type: 'normal',
        label: this.schedulesPaused ? 'Resume scheduled backups' : 'Pause scheduled backups',
        enabled: true,
        action: { kind: 'setSchedulesPaused', paused: !this.schedulesPaused },
      });
    }
    items.push(
      { type: 'separator' },
      { type: 'normal', label: 'Open Diskline', enabled: true, action: { kind: 'openWindow' } },
      {
        type: 'checkbox',
        label: 'Start at login',
        checked: options.startAtLogin,
        enabled: true,
        action: { kind: 'setStartAtLogin', enabled: !options.startAtLogin },
      },
      { type: 'separator' },
      { type: 'normal', label: 'Quit Diskline', enabled: true, action: { kind: 'quit' } },
    );
    return items;
  }
}
