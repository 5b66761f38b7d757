import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeJob, makePlan } from './testing/fixtures.ts';
import { formatBytes, type TrayMenuItem, TrayState } from './tray-model.ts';

const now = new Date('2026-11-25T23:10:00Z');
const options = { now, startAtLogin: false, timeZone: 'UTC' };

function connectedState(): TrayState {
  const state = new TrayState();
  state.setConnection({ kind: 'connected', privileged: true });
  state.setEngineStatus({ schedulesPaused: false, nextRun: '2026-11-26T02:30:00Z' });
  state.setPlans([makePlan()]);
  return state;
}

const labels = (menu: TrayMenuItem[]) => menu.map((item) => (item.type === 'separator' ? '---' : item.label));
const find = (menu: TrayMenuItem[], label: string) => {
  const item = menu.find((i) => i.type !== 'separator' && i.label === label);
  assert.ok(item && item.type !== 'separator', `menu has "${label}": ${labels(menu).join(' | ')}`);
  return item;
};

test('idle: the next run, back up now, pause, open, start at login, quit', () => {
  const view = connectedState().view(options);
  assert.equal(view.icon, 'idle');
  assert.equal(view.tooltip, 'Diskline\nNext backup: tomorrow 02:30');
  assert.deepEqual(labels(view.menu), [
    'Next backup: tomorrow 02:30',
    '---',
    'Back up now',
    'Pause scheduled backups',
    '---',
    'Open Diskline',
    'Start at login',
    '---',
    'Quit Diskline',
  ]);
  assert.deepEqual(find(view.menu, 'Back up now'), {
    type: 'normal',
    label: 'Back up now',
    enabled: true,
    action: { kind: 'backupNow', planId: 'plan-1' },
  });
  assert.deepEqual(find(view.menu, 'Pause scheduled backups').action, {
    kind: 'setSchedulesPaused',
    paused: true,
  });
  assert.deepEqual(find(view.menu, 'Start at login').action, { kind: 'setStartAtLogin', enabled: true });
});

test('backing up: busy icon, progress in the tooltip, back up now disabled', () => {
  const state = connectedState();
  state.jobUpdated(
    makeJob({ doneBytes: 1_250_000_000, totalBytes: 2_900_000_000, etaSeconds: 190, title: 'Whole disk' }),
  );
  const view = state.view(options);
  assert.equal(view.icon, 'busy');
  assert.equal(view.tooltip, 'Diskline\nBacking up Whole disk: 43% (1.3 GB of 2.9 GB), 3 min left');
  assert.equal(find(view.menu, 'Back up now').enabled, false);
  // The schedule stays in the menu while the tooltip is about the backup.
  assert.ok(labels(view.menu).includes('Next backup: tomorrow 02:30'));
});

test('a finished backup returns the tray to idle', () => {
  const state = connectedState();
  state.jobUpdated(makeJob({ state: 'running' }));
  state.jobUpdated(makeJob({ state: 'succeeded', doneBytes: 10, totalBytes: 10 }));
  assert.equal(state.view(options).icon, 'idle');
});

test('a failed backup needs attention until the window is opened', () => {
  const state = connectedState();
  state.jobUpdated(makeJob({ state: 'running' }));
  state.jobUpdated(
    makeJob({ state: 'failed', error: 'repository /srv/backups is locked by another backup' }),
  );
  const view = state.view(options);
  assert.equal(view.icon, 'attention');
  assert.equal(
    view.tooltip,
    'Diskline\n/dev/sda failed: repository /srv/backups is locked by another backup',
  );
  state.acknowledge();
  assert.equal(state.view(options).icon, 'idle');
});

test('a failed scheduled run needs attention; the same plan succeeding clears it', () => {
  const state = connectedState();
  const ran = { planId: 'plan-1', name: 'Whole disk', time: now.toISOString() };
  state.planRan({ ...ran, ok: false, message: 'source /dev/sda is missing' });
  assert.equal(state.view(options).icon, 'attention');
  assert.match(state.view(options).tooltip, /Backup "Whole disk" failed: source \/dev\/sda is missing/);
  state.planRan({ ...ran, ok: true, message: 'done' });
  assert.equal(state.view(options).icon, 'idle');
});

test('a running backup shows busy even with an older failure pending', () => {
  const state = connectedState();
  state.jobUpdated(makeJob({ id: 'old', state: 'failed' }));
  state.jobUpdated(makeJob({ id: 'new', state: 'running' }));
  assert.equal(state.view(options).icon, 'busy');
});

test('paused schedules offer resume and say they are paused', () => {
  const state = connectedState();
  state.setEngineStatus({ schedulesPaused: true, nextRun: '2026-11-26T02:30:00Z' });
  const view = state.view(options);
  assert.equal(view.tooltip, 'Diskline\nScheduled backups paused');
  assert.deepEqual(find(view.menu, 'Resume scheduled backups').action, {
    kind: 'setSchedulesPaused',
    paused: false,
  });
});

test('several plans: back up now is a submenu of plan names', () => {
  const state = connectedState();
  state.setPlans([makePlan({ id: 'a', name: 'System' }), makePlan({ id: 'b', name: 'Data' })]);
  const item = find(state.view(options).menu, 'Back up now');
  assert.equal(item.type, 'normal');
  assert.deepEqual(
    item.type === 'normal' && item.submenu?.map((i) => i.type !== 'separator' && [i.label, i.action]),
    [
      ['System', { kind: 'backupNow', planId: 'a' }],
      ['Data', { kind: 'backupNow', planId: 'b' }],
    ],
  );
});

test('no plan yet: back up now is disabled and says why', () => {
  const state = connectedState();
  state.setPlans([makePlan({ enabled: false })]);
  assert.equal(find(state.view(options).menu, 'Back up now (no backup plan yet)').enabled, false);
});

test('engine offline: attention, the reason, no schedule controls', () => {
  const state = connectedState();
  state.jobUpdated(makeJob({ state: 'running' }));
  state.setConnection({ kind: 'offline', reason: 'The engine is not running.' });
  const view = state.view(options);
  assert.equal(view.icon, 'attention');
  assert.equal(view.tooltip, 'Diskline\nThe engine is not running.');
  assert.equal(find(view.menu, 'Back up now').enabled, false);
  assert.ok(!labels(view.menu).some((l) => l.includes('scheduled backups')));
});

test('an engine without rights is called limited in the tooltip', () => {
  const state = connectedState();
  state.setConnection({ kind: 'connected', privileged: false });
  assert.equal(
    state.view(options).tooltip,
    'Diskline\nLimited mode: no administrator rights, browsing restore points only\nNext backup: tomorrow 02:30',
  );
});

test('start at login shows as checked and offers to turn it off', () => {
  const item = find(connectedState().view({ ...options, startAtLogin: true }).menu, 'Start at login');
  assert.equal(item.type === 'checkbox' && item.checked, true);
  assert.deepEqual(item.action, { kind: 'setStartAtLogin', enabled: false });
});

test('byte counts are written in decimal units', () => {
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1500), '2 kB');
  assert.equal(formatBytes(64 * 1024 * 1024), '67.1 MB');
});
