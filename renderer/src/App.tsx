// The application shell: sidebar navigation, the top bar (repository, theme), the connection banner, the open
// view, the restore confirmation and notices.
import { useEffect } from 'react';
import { ErrorNote } from './components/ErrorNote.tsx';
import { Icon, type IconName } from './components/Icon.tsx';
import { RestoreDialog } from './components/RestoreDialog.tsx';
import { useApp } from './store/app-store.ts';
import { isActive } from './store/jobs-slice.ts';
import type { ThemeChoice, ViewName } from './store/ui-slice.ts';
import { DrivesView } from './views/DrivesView.tsx';
import { HealthView } from './views/HealthView.tsx';
import { LiveJobView } from './views/LiveJobView.tsx';
import { PlansView } from './views/PlansView.tsx';
import { SchedulesView } from './views/SchedulesView.tsx';
import { SettingsView } from './views/SettingsView.tsx';
import { TimelineView } from './views/TimelineView.tsx';

const navigation: { view: ViewName; label: string; icon: IconName }[] = [
  { view: 'timeline', label: 'Timeline', icon: 'timeline' },
  { view: 'live', label: 'Live job', icon: 'live' },
  { view: 'drives', label: 'Drives', icon: 'drives' },
  { view: 'plans', label: 'Backup plans', icon: 'plans' },
  { view: 'schedules', label: 'Schedules', icon: 'schedules' },
  { view: 'health', label: 'Repository health', icon: 'health' },
  { view: 'settings', label: 'Settings', icon: 'settings' },
];

const views: Record<ViewName, () => React.JSX.Element> = {
  drives: DrivesView,
  plans: PlansView,
  live: LiveJobView,
  timeline: TimelineView,
  schedules: SchedulesView,
  health: HealthView,
  settings: SettingsView,
};

const nextTheme: Record<ThemeChoice, ThemeChoice> = { system: 'light', light: 'dark', dark: 'system' };
const themeIcon: Record<ThemeChoice, IconName> = { system: 'auto', light: 'sun', dark: 'moon' };

function useAppliedTheme(): void {
  const theme = useApp((s) => s.theme);
  useEffect(() => {
    const media = window.matchMedia?.('(prefers-color-scheme: dark)');
    const apply = () => {
      const dark = theme === 'dark' || (theme === 'system' && !!media?.matches);
      document.documentElement.dataset.theme = dark ? 'dark' : 'light';
    };
    apply();
    media?.addEventListener?.('change', apply);
    return () => media?.removeEventListener?.('change', apply);
  }, [theme]);
}

function ConnectionBanner() {
  const connection = useApp((s) => s.connection);
  if (connection.status === 'connected') return null;
  const seconds = connection.retryInMs !== null ? Math.ceil(connection.retryInMs / 1000) : null;
  return (
    <div className={`banner ${connection.status}`} role="status">
      {connection.status === 'connecting'
        ? 'Connecting to the engine…'
        : `Disconnected from the engine${connection.reason ? `: ${connection.reason}` : ''}. Retrying${seconds !== null ? ` in ${seconds} s` : ''}; is \`diskline serve\` still running?`}
    </div>
  );
}

function Sidebar() {
  const view = useApp((s) => s.view);
  const setView = useApp((s) => s.setView);
  const running = useApp((s) => s.jobOrder.filter((id) => s.jobs[id] && isActive(s.jobs[id]!)).length);
  const status = useApp((s) => s.connection.status);
  return (
    <nav className="sidebar" aria-label="Main">
      <div className="brand">
        <span className="brand-mark" aria-hidden="true" />
        Diskline
      </div>
      <ul>
        {navigation.map((item) => (
          <li key={item.view}>
            <button
              type="button"
              className={view === item.view ? 'nav-item active' : 'nav-item'}
              aria-current={view === item.view ? 'page' : undefined}
              onClick={() => setView(item.view)}
            >
              <Icon name={item.icon} />
              <span>{item.label}</span>
              {item.view === 'live' && running > 0 && <span className="nav-count">{running}</span>}
            </button>
          </li>
        ))}
      </ul>
      <div className="sidebar-foot">
        <span className={`dot link-${status}`} aria-hidden="true" />
        <span className="small">{status === 'connected' ? 'Engine connected' : `Engine ${status}`}</span>
      </div>
    </nav>
  );
}

function TopBar() {
  const repos = useApp((s) => s.repos);
  const currentRepo = useApp((s) => s.currentRepo);
  const setCurrentRepo = useApp((s) => s.setCurrentRepo);
  const theme = useApp((s) => s.theme);
  const setTheme = useApp((s) => s.setTheme);
  const setView = useApp((s) => s.setView);
  return (
    <div className="topbar">
      <div className="repo-picker">
        <span className="muted small">Repository</span>
        {repos.length > 0 ? (
          <select
            aria-label="Current repository"
            value={currentRepo ?? ''}
            onChange={(e) => setCurrentRepo(e.target.value || null)}
          >
            {!currentRepo && <option value="">Choose…</option>}
            {repos.map((repo) => (
              <option key={repo} value={repo}>
                {repo}
              </option>
            ))}
          </select>
        ) : (
          <button type="button" className="link" onClick={() => setView('settings')}>
            Add a repository
          </button>
        )}
      </div>
      <span className="spacer" />
      <button
        type="button"
        className="icon-button"
        onClick={() => setTheme(nextTheme[theme])}
        aria-label={`Theme: ${theme}. Switch to ${nextTheme[theme]}`}
        title={`Theme: ${theme}`}
      >
        <Icon name={themeIcon[theme]} />
      </button>
    </div>
  );
}

/** How long a notice stays before it goes by itself. */
const NOTICE_MS = 8000;

function Notices() {
  const notices = useApp((s) => s.notices);
  const dismiss = useApp((s) => s.dismissNotice);
  useEffect(() => {
    const timers = notices.map((notice) => setTimeout(() => dismiss(notice.id), NOTICE_MS));
    return () => timers.forEach(clearTimeout);
  }, [notices, dismiss]);
  return (
    <div className="notices" aria-live="polite">
      {notices.map((notice) => (
        <div key={notice.id} className={`notice ${notice.tone}`}>
          <span>{notice.text}</span>
          <button type="button" className="link" aria-label="Dismiss" onClick={() => dismiss(notice.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}

export function App() {
  useAppliedTheme();
  const view = useApp((s) => s.view);
  const View = views[view];
  return (
    <div className="app">
      <Sidebar />
      <main className="main">
        <TopBar />
        <ConnectionBanner />
        <ErrorNote place="status" />
        <View />
      </main>
      <RestoreDialog />
      <Notices />
    </div>
  );
}
