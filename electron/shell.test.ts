import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { callChannel, eventChannel } from './ipc-policy.ts';
import { type Shell, type ShellConfig, startShell } from './shell.ts';
import { createFakeElectron, type FakeElectron } from './testing/fake-electron.ts';
import { makeJob, makePlan } from './testing/fixtures.ts';
import { supervisorOfRunningEngine } from './testing/running-engine.ts';
import { TestEngine } from './testing/test-engine.ts';
import { waitFor } from './testing/wait-for.ts';

let dir: string;
let engine: TestEngine;
let fake: FakeElectron;
let shell: Shell | null;
let paused: boolean;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-shell-'));
  await mkdir(join(dir, 'renderer', 'assets'), { recursive: true });
  await writeFile(join(dir, 'renderer', 'index.html'), '<!doctype html><title>Diskline</title>');
  await writeFile(join(dir, 'renderer', 'assets', 'app.js'), 'console.log(1)');
  await writeFile(join(dir, 'secret.txt'), 'not for the renderer');
  engine = await TestEngine.listen(join(dir, 'engine.sock'));
  paused = false;
  engine.handle('engine.status', () => ({
    version: 't',
    privileged: true,
    schedulesPaused: paused,
    nextRun: '2026-11-26T02:30:00Z',
  }));
  engine.handle('plans.list', () => [makePlan()]);
  engine.handle('jobs.list', () => []);
  engine.handle('plans.runNow', () => makeJob({ state: 'queued' }));
  engine.handle('schedules.setPaused', (params) => {
    paused = (params as { paused: boolean }).paused;
    return { paused };
  });
  fake = createFakeElectron();
  shell = null;
});

afterEach(async () => {
  shell?.engine.stop();
  shell?.tray.dispose();
  await engine.close();
  await rm(dir, { recursive: true, force: true });
});

function config(overrides: Partial<ShellConfig> = {}): ShellConfig {
  return {
    rendererDir: join(dir, 'renderer'),
    preloadPath: '/opt/diskline/electron/dist/electron/preload.cjs',
    assetsDir: '/opt/diskline/assets',
    startHidden: false,
    timeZone: 'UTC',
    now: () => new Date('2026-11-25T23:10:00Z'),
    trayRenderIntervalMs: 20,
    createEngine: (onConnection) =>
      supervisorOfRunningEngine(engine.socketPath, join(dir, 'user.sock'), onConnection, { maxSleepMs: 20 }),
    ...overrides,
  };
}

async function started(overrides: Partial<ShellConfig> = {}): Promise<Shell> {
  shell = await startShell(fake.electron, config(overrides));
  assert.ok(shell);
  await waitFor('the tray to show the schedule', () =>
    fake.trays[0]!.toolTip.includes('Next backup: tomorrow 02:30'),
  );
  return shell;
}

const ourPage = { url: 'app://diskline/index.html', parent: null };

test('a second instance quits and leaves the window to the first', async () => {
  fake.app.lockAvailable = false;
  assert.equal(await startShell(fake.electron, config()), null);
  assert.equal(fake.app.quitCalls, 1);
  assert.equal(fake.windows.length, 0);
  assert.equal(fake.trays.length, 0);
  fake.app.lockAvailable = true;
});

test('the window is sandboxed, isolated, without Node, with our preload, on our own origin', async () => {
  await started();
  assert.equal(fake.windows.length, 1);
  const window = fake.windows[0]!;
  assert.deepEqual(window.options.webPreferences, {
    preload: '/opt/diskline/electron/dist/electron/preload.cjs',
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    nodeIntegrationInSubFrames: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    webviewTag: false,
    navigateOnDragDrop: false,
    safeDialogs: true,
    spellcheck: false,
  });
  assert.deepEqual(window.loadedUrls, ['app://diskline/index.html']);
  assert.equal(window.visible, true);
  assert.deepEqual(fake.privilegedSchemes, [
    {
      schemes: [
        {
          scheme: 'app',
          privileges: {
            standard: true,
            secure: true,
            supportFetchAPI: true,
            corsEnabled: true,
            codeCache: true,
          },
        },
      ],
      beforeReady: true,
    },
  ]);
});

test('the development URL is loaded when given, and only its origin is trusted besides ours', async () => {
  await started({ devServerUrl: 'http://localhost:5173/' });
  assert.deepEqual(fake.windows[0]!.loadedUrls, ['http://localhost:5173/']);
  assert.equal(fake.windows[0]!.webContents.navigate('http://localhost:5173/#/points'), true);
  assert.equal(fake.windows[0]!.webContents.navigate('http://localhost:8080/'), false);
});

test('navigation away, new windows, webviews and permissions are all refused', async () => {
  await started();
  const contents = fake.windows[0]!.webContents;
  assert.equal(contents.navigate('https://example.com/'), false);
  assert.equal(contents.navigate('file:///etc/passwd'), false);
  assert.equal(contents.navigate('app://diskline/index.html#/restore'), true);
  assert.deepEqual(contents.windowOpenHandler?.({ url: 'https://example.com/' }), { action: 'deny' });
  assert.equal(contents.attachWebview(), false);
  const answers: boolean[] = [];
  for (const handler of fake.permissionHandlers)
    handler({}, 'geolocation', (granted) => answers.push(granted));
  assert.deepEqual(answers, [false]);
});

test('every response carries the strict CSP, and the app scheme serves only the renderer folder', async () => {
  await started();
  let headers: Record<string, string[] | string> | undefined;
  fake.headerListeners[0]!(
    {
      url: 'http://localhost:5173/',
      responseHeaders: { 'content-security-policy': ['default-src *'], 'Content-Type': ['text/html'] },
    },
    (response) => (headers = response.responseHeaders),
  );
  assert.deepEqual(Object.keys(headers!), ['Content-Type', 'Content-Security-Policy']);
  const policy = (headers!['Content-Security-Policy'] as string[])[0]!;
  assert.match(policy, /^default-src 'none'; script-src 'self'; /);
  assert.ok(!policy.includes('unsafe-eval'));

  const serve = fake.protocolHandlers.get('app')!;
  const index = await serve(new Request('app://diskline/index.html'));
  assert.equal(index.status, 200);
  assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(index.headers.get('content-security-policy'), policy);
  assert.equal(await index.text(), '<!doctype html><title>Diskline</title>');
  assert.equal(
    (await serve(new Request('app://diskline/assets/app.js'))).headers.get('content-type'),
    'text/javascript; charset=utf-8',
  );
  assert.equal(
    await (await serve(new Request('app://diskline/points/42'))).text(),
    '<!doctype html><title>Diskline</title>',
  );
  assert.equal((await serve(new Request('app://diskline/assets/missing.js'))).status, 404);
  // Dot segments, even escaped ones, are resolved by the URL parser; an escaped slash is caught by ours.
  assert.equal((await serve(new Request('app://diskline/%2e%2e/secret.txt'))).status, 404);
  assert.equal((await serve(new Request('app://diskline/..%2fsecret.txt'))).status, 403);
  assert.equal((await serve(new Request('app://diskline/assets%2f..%2f..%2fsecret.txt'))).status, 403);
  assert.equal((await serve(new Request('app://elsewhere/index.html'))).status, 403);
});

test('calls from our page reach the engine; calls from elsewhere or for unknown methods are refused', async () => {
  await started();
  assert.deepEqual(await fake.invoke(callChannel, ourPage, { method: 'plans.list', params: {} }), {
    ok: true,
    result: [makePlan()],
  });
  assert.deepEqual(engine.requests.at(-1), { method: 'plans.list', params: {} });
  const before = engine.requests.length;
  const refused = (message: string) => ({ ok: false, error: { code: 'forbidden', message } });
  assert.deepEqual(
    await fake.invoke(
      callChannel,
      { url: 'https://evil.example/', parent: null },
      { method: 'plans.list', params: {} },
    ),
    refused('Diskline refused the call: a page from https://evil.example may not call the engine'),
  );
  assert.deepEqual(
    await fake.invoke(
      callChannel,
      { url: 'app://diskline/frame.html', parent: ourPage },
      { method: 'plans.list' },
    ),
    refused('Diskline refused the call: a subframe (app://diskline/frame.html) may not call the engine'),
  );
  assert.deepEqual(
    await fake.invoke(callChannel, ourPage, { method: 'engine.shutdown', params: {} }),
    refused("Diskline refused the call: unknown method 'engine.shutdown'"),
  );
  assert.equal(engine.requests.length, before, 'nothing refused reached the engine');
  assert.deepEqual([...fake.ipcHandlers.keys()], [callChannel]);
});

test("the engine's errors reach the page as data: its code and its message", async () => {
  await started();
  assert.deepEqual(await fake.invoke(callChannel, ourPage, { method: 'drives.list', params: {} }), {
    ok: false,
    error: { code: 'unknown-method', message: 'no drives.list here' },
  });
});

test('the tray follows a backup: busy with progress, then idle with a notification', async () => {
  await started();
  const tray = fake.trays[0]!;
  assert.equal(tray.icon, '/opt/diskline/assets/tray/tray-idle.png');
  engine.emit(
    'job.updated',
    makeJob({ state: 'running', doneBytes: 500_000_000, totalBytes: 1_000_000_000 }),
  );
  await waitFor('the busy icon', () => tray.icon.endsWith('tray-busy.png'));
  assert.equal(tray.toolTip, 'Diskline\nBacking up /dev/sda: 50% (500.0 MB of 1.0 GB)');
  assert.equal(tray.menu?.template.find((i) => i.label === 'Back up now')?.enabled, false);
  engine.emit(
    'job.updated',
    makeJob({ state: 'succeeded', doneBytes: 1_000_000_000, totalBytes: 1_000_000_000 }),
  );
  await waitFor('the idle icon', () => tray.icon.endsWith('tray-idle.png'));
  assert.deepEqual(fake.notifications, [
    { title: 'Backup finished', body: '/dev/sda (1.0 GB)', urgency: 'normal' },
  ]);
  const forwarded = fake.windows[0]!.webContents.sent.filter((m) => m.channel === eventChannel);
  assert.deepEqual(
    forwarded.map((m) => (m.args[0] as { event: string; data: { state: string } }).data.state),
    ['running', 'succeeded'],
  );
});

test('a failed backup turns the tray to attention and notifies urgently', async () => {
  await started();
  const tray = fake.trays[0]!;
  engine.emit('job.updated', makeJob({ state: 'running' }));
  engine.emit('job.updated', makeJob({ state: 'failed', error: 'the repository /srv/backups is full' }));
  await waitFor('the attention icon', () => tray.icon.endsWith('tray-attention.png'));
  assert.deepEqual(fake.notifications.at(-1), {
    title: 'Backup failed',
    body: '/dev/sda failed: the repository /srv/backups is full',
    urgency: 'critical',
  });
  tray.click('Open Diskline');
  await waitFor('the idle icon', () => tray.icon.endsWith('tray-idle.png'));
});

test('tray menu: back up now runs the plan; pause and resume the schedules', async () => {
  await started();
  const tray = fake.trays[0]!;
  tray.click('Back up now');
  await waitFor('plans.runNow', () => engine.requests.some((r) => r.method === 'plans.runNow'));
  assert.deepEqual(engine.requests.find((r) => r.method === 'plans.runNow')?.params, { id: 'plan-1' });
  engine.emit('job.updated', makeJob({ state: 'succeeded' }));
  tray.click('Pause scheduled backups');
  await waitFor('the resume item', () => tray.labels().includes('Resume scheduled backups'));
  assert.equal(paused, true);
  assert.match(tray.toolTip, /Scheduled backups paused/);
  tray.click('Resume scheduled backups');
  await waitFor('the pause item', () => tray.labels().includes('Pause scheduled backups'));
  assert.equal(paused, false);
});

test('closing the window keeps the tray; quit from the tray ends the app', async () => {
  await started();
  const window = fake.windows[0]!;
  assert.equal(window.userClose(), false);
  assert.equal(window.visible, false);
  fake.trays[0]!.click('Open Diskline');
  assert.equal(window.visible, true);
  assert.equal(fake.windows.length, 1, 'the same window is shown again');
  fake.trays[0]!.click('Quit Diskline');
  assert.equal(fake.app.quitCalls, 1);
  assert.equal(window.userClose(), true);
});

test('start at login is a checkbox that starts the app hidden in the tray', async () => {
  await started();
  fake.trays[0]!.click('Start at login');
  assert.deepEqual(fake.app.loginSettings, [{ openAtLogin: true, args: ['--hidden'] }]);
  await waitFor(
    'the checked item',
    () => fake.trays[0]!.menu?.template.find((i) => i.label === 'Start at login')?.checked === true,
  );
});

test("ended jobs in the engine's list are history, not news: no attention, no notification", async () => {
  engine.handle('jobs.list', () => [
    makeJob({ id: 'old-failure', state: 'failed', error: 'disk full', endedAt: '2026-11-20T02:31:00Z' }),
    makeJob({ id: 'old-success', state: 'succeeded', endedAt: '2026-11-21T02:31:00Z' }),
  ]);
  await started();
  engine.emit('plans.changed', {});
  await waitFor(
    'a second refresh',
    () => engine.requests.filter((r) => r.method === 'jobs.list').length >= 2,
  );
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(fake.trays[0]!.icon, '/opt/diskline/assets/tray/tray-idle.png');
  assert.deepEqual(fake.notifications, []);
});

test('a job that ended while the shell was not looking is folded in from the list on refresh', async () => {
  let jobs = [makeJob({ id: 'j', state: 'running' })];
  engine.handle('jobs.list', () => jobs);
  shell = await startShell(fake.electron, config());
  await waitFor('the busy icon', () => fake.trays[0]!.icon.endsWith('tray-busy.png'));
  jobs = [makeJob({ id: 'j', state: 'failed', error: 'source vanished' })];
  engine.emit('plans.changed', {});
  await waitFor('the attention icon', () => fake.trays[0]!.icon.endsWith('tray-attention.png'));
  assert.deepEqual(fake.notifications.at(-1), {
    title: 'Backup failed',
    body: '/dev/sda failed: source vanished',
    urgency: 'critical',
  });
});

test('started hidden, only the tray shows until the user opens the window', async () => {
  await started({ startHidden: true });
  assert.equal(fake.windows.length, 0);
  fake.trays[0]!.emit('click');
  assert.equal(fake.windows.length, 1);
});
