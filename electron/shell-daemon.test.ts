// The shell (with the fake Electron) against the real engine daemon: what the user sees in the tray and
// the window's bridge when the engine runs backups.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Job } from '../protocol/model.ts';
import { EngineSupervisor } from './engine-supervisor.ts';
import { type CallAnswer, callChannel } from './ipc-policy.ts';
import { type Shell, startShell } from './shell.ts';
import { EngineProcess } from './testing/engine-process.ts';
import { createFakeElectron, type FakeElectron } from './testing/fake-electron.ts';
import { supervisorOfRunningEngine } from './testing/running-engine.ts';
import { waitFor } from './testing/wait-for.ts';

let dir: string;
let engine: EngineProcess;
let fake: FakeElectron;
let shell: Shell;
const ourPage = { url: 'app://diskline/index.html', parent: null };
/** A call as the preload makes it: the answer's result, or its error thrown. */
async function call(method: string, params: unknown): Promise<unknown> {
  const answer = (await fake.invoke(callChannel, ourPage, { method, params })) as CallAnswer;
  if (!answer.ok) throw Object.assign(new Error(answer.error.message), { code: answer.error.code });
  return answer.result;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-shell-daemon-'));
  engine = await EngineProcess.start(dir, { DISKLINE_PASSWORD: 'correct horse battery staple' });
  fake = createFakeElectron();
  const started = await startShell(fake.electron, {
    rendererDir: join(dir, 'renderer'),
    preloadPath: join(dir, 'preload.cjs'),
    assetsDir: join(dir, 'assets'),
    startHidden: false,
    trayRenderIntervalMs: 20,
    createEngine: (onConnection) =>
      supervisorOfRunningEngine(engine.socketPath, join(dir, 'user.sock'), onConnection),
  });
  assert.ok(started);
  shell = started;
  await waitFor('the connection', () => shell.engine instanceof EngineSupervisor && shell.engine.connected);
});

after(async () => {
  shell?.engine.stop();
  shell?.tray.dispose();
  await engine?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function jobEnd(id: string): Promise<Job> {
  let ended: Job | undefined;
  await waitFor(
    `job ${id} to end`,
    () => {
      const sent = fake.windows[0]!.webContents.sent.map((m) => m.args[0] as { event: string; data: Job });
      ended = sent.find(
        (m) => m.event === 'job.updated' && m.data.id === id && m.data.endedAt !== null,
      )?.data;
      return ended !== undefined;
    },
    60_000,
  );
  return ended!;
}

test('connected to the real engine: the tray is idle and the window reaches the engine', async () => {
  await waitFor('the idle tooltip', () => fake.trays[0]!.toolTip === 'Diskline\nNo backup scheduled');
  assert.equal(shell.trayState.icon(), 'idle');
  const status = (await call('engine.status', {})) as { version: string };
  assert.match(status.version, /^\d+\.\d+\.\d+/);
});

test('pausing schedules from the tray reaches the engine', async () => {
  fake.trays[0]!.click('Pause scheduled backups');
  await waitFor('the resume item', () => fake.trays[0]!.labels().includes('Resume scheduled backups'));
  assert.equal(((await call('engine.status', {})) as { schedulesPaused: boolean }).schedulesPaused, true);
  fake.trays[0]!.click('Resume scheduled backups');
  await waitFor('the pause item', () => fake.trays[0]!.labels().includes('Pause scheduled backups'));
});

test('a backup that fails turns the tray to attention and tells why', async () => {
  const source = join(dir, 'broken-source.img');
  await writeFile(source, Buffer.alloc(1 << 20));
  // A directory that is not a repository: the engine holds it at the call, and the job fails opening it.
  const notARepository = join(dir, 'not-a-repository');
  await mkdir(notARepository, { recursive: true });
  const job = (await call('backup.start', { source, repo: notARepository })) as Job;
  const ended = await jobEnd(job.id);
  assert.equal(ended.state, 'failed');
  await waitFor('the attention icon', () => fake.trays[0]!.icon.endsWith('tray-attention.png'));
  assert.ok(fake.trays[0]!.toolTip.includes(ended.error!), fake.trays[0]!.toolTip);
  assert.deepEqual(fake.notifications.at(-1), {
    title: 'Backup failed',
    body: `${ended.title} failed: ${ended.error}`,
    urgency: 'critical',
  });
  fake.trays[0]!.click('Open Diskline');
  await waitFor('the idle icon again', () => fake.trays[0]!.icon.endsWith('tray-idle.png'));
});

test('a backup of an ext4 image shows busy, then idle, and is announced', async (t) => {
  const repo = join(dir, 'repo');
  try {
    await call('repo.init', { repo, encrypted: true });
  } catch (error) {
    const message = (error as Error).message;
    if (/not available yet/.test(message))
      return t.skip(`the engine cannot create repositories yet: ${message}`);
    throw error;
  }
  const source = join(dir, 'source.img');
  execFileSync('truncate', ['-s', '64M', source]);
  execFileSync('mkfs.ext4', ['-q', '-F', source]);
  const iconsBefore = shell.tray.shownIcons.length;
  const job = (await call('backup.start', { source, repo })) as Job;
  const ended = await jobEnd(job.id);
  assert.equal(ended.state, 'succeeded', ended.error ?? '');
  await waitFor('the idle icon', () => fake.trays[0]!.icon.endsWith('tray-idle.png'));
  assert.deepEqual(shell.tray.shownIcons.slice(iconsBefore), ['busy', 'idle']);
  assert.equal(fake.notifications.at(-1)?.title, 'Backup finished');
  const points = (await call('points.list', { repo })) as { source: string; complete: boolean }[];
  assert.equal(points.length, 1);
  assert.equal(points[0]!.complete, true);
});
