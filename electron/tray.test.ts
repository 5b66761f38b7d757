import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createFakeElectron } from './testing/fake-electron.ts';
import { makeJob } from './testing/fixtures.ts';
import { menuTemplate, TrayPresenter } from './tray.ts';
import { type TrayAction, TrayState } from './tray-model.ts';

const options = { now: new Date('2026-11-25T23:10:00Z'), startAtLogin: false, timeZone: 'UTC' };

test('icon changes render at once, however close together; progress alone waits for the interval', async () => {
  const fake = createFakeElectron();
  const state = new TrayState();
  state.setConnection({ kind: 'connected', privileged: true });
  const presenter = new TrayPresenter(
    fake.electron,
    '/assets',
    () => state.view(options),
    () => {},
    10_000,
  );
  try {
    const tray = fake.trays[0]!;
    state.jobUpdated(makeJob({ state: 'running', doneBytes: 1, totalBytes: 100 }));
    presenter.update();
    assert.equal(tray.icon, '/assets/tray/tray-busy.png');
    state.jobUpdated(makeJob({ state: 'running', doneBytes: 50, totalBytes: 100 }));
    presenter.update();
    assert.match(tray.toolTip, /: 1% /, 'progress waits');
    state.jobUpdated(makeJob({ state: 'succeeded' }));
    presenter.update();
    assert.equal(tray.icon, '/assets/tray/tray-idle.png');
    assert.deepEqual(presenter.shownIcons, ['idle', 'busy', 'idle']);
  } finally {
    presenter.dispose();
  }
});

test('menu items become Electron templates whose clicks dispatch the model actions', () => {
  const dispatched: TrayAction[] = [];
  const template = menuTemplate(
    [
      { type: 'normal', label: 'Status', enabled: false },
      { type: 'separator' },
      {
        type: 'normal',
        label: 'Back up now',
        enabled: true,
        submenu: [
          { type: 'normal', label: 'Home', enabled: true, action: { kind: 'backupNow', planId: 'h' } },
        ],
      },
      {
        type: 'checkbox',
        label: 'Start at login',
        checked: true,
        enabled: true,
        action: { kind: 'setStartAtLogin', enabled: false },
      },
    ],
    (action) => dispatched.push(action),
  );
  assert.deepEqual(
    template.map((i) => [i.type ?? 'normal', i.label, i.enabled, i.checked]),
    [
      ['normal', 'Status', false, undefined],
      ['separator', undefined, undefined, undefined],
      ['normal', 'Back up now', true, undefined],
      ['checkbox', 'Start at login', true, true],
    ],
  );
  assert.equal(template[0]!.click, undefined);
  (template[2]!.submenu as { click: () => void }[])[0]!.click();
  (template[3]!.click as () => void)();
  assert.deepEqual(dispatched, [
    { kind: 'backupNow', planId: 'h' },
    { kind: 'setStartAtLogin', enabled: false },
  ]);
});
