import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { ManualClock } from '../protocol/testing/manual-clock.ts';
import { type ElevationOutcome, limitedModeScope } from './elevation.ts';
import { startElevatedEngine } from './engine-launcher.ts';
import { EngineLink } from './engine-link.ts';
import { EngineSupervisor, type SupervisorDeps } from './engine-supervisor.ts';
import { makeJob } from './testing/fixtures.ts';
import { TestEngine } from './testing/test-engine.ts';
import { waitFor } from './testing/wait-for.ts';
import type { EngineConnection } from './tray-model.ts';

let dir: string;
const engines: TestEngine[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-supervisor-'));
});
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.close()));
  await rm(dir, { recursive: true, force: true });
});

async function startEngine(socketPath: string, privileged: boolean): Promise<TestEngine> {
  const engine = await TestEngine.listen(socketPath);
  engine.handle('engine.status', () => ({ version: 't', privileged, schedulesPaused: false, nextRun: null }));
  engines.push(engine);
  return engine;
}

function harness(overrides: Partial<SupervisorDeps> = {}) {
  const connections: [EngineConnection, string | null][] = [];
  const calls: string[] = [];
  const deps: SupervisorDeps = {
    systemSocket: join(dir, 'system.sock'),
    userSocket: join(dir, 'user.sock'),
    connect: (path, onEvent) => EngineLink.connect(path, onEvent),
    startElevated: async () => {
      calls.push('startElevated');
      return { kind: 'declined' };
    },
    startUnprivileged: async (path) => {
      calls.push(`startUnprivileged ${path}`);
      await startEngine(path, false);
    },
    clock: new ManualClock(),
    onConnection: (connection, notice) => connections.push([connection, notice]),
    ...overrides,
  };
  const clock = deps.clock as ManualClock;
  /** Lets the supervisor's backoff run (each wait ends at once) until `condition` holds. */
  async function retryUntil(what: string, condition: () => boolean): Promise<void> {
    await waitFor(what, () => {
      if (clock.pending > 0) void clock.fireNext();
      return condition();
    });
  }
  return { supervisor: new EngineSupervisor(deps), connections, calls, deps, retryUntil };
}

test('a running service is used as is, without asking for rights', async () => {
  const { supervisor, connections, calls, deps } = harness();
  await startEngine(deps.systemSocket, true);
  await supervisor.start();
  try {
    assert.deepEqual(calls, []);
    assert.deepEqual(connections.at(-1), [{ kind: 'connected', privileged: true }, null]);
    assert.equal((await supervisor.call('engine.status', {})).version, 't');
  } finally {
    supervisor.stop();
  }
});

test('without a service, the engine is started elevated and connected to', async () => {
  const systemSocket = join(dir, 'system.sock');
  const { supervisor, connections, calls } = harness({
    startElevated: async (): Promise<ElevationOutcome> => {
      await startEngine(systemSocket, true);
      return { kind: 'started' };
    },
  });
  await supervisor.start();
  try {
    assert.deepEqual(calls, []);
    assert.deepEqual(connections.at(-1), [{ kind: 'connected', privileged: true }, null]);
  } finally {
    supervisor.stop();
  }
});

test('declined rights: an unprivileged engine is started and the limits are explained', async () => {
  const { supervisor, connections, calls, deps } = harness();
  await supervisor.start();
  try {
    assert.deepEqual(calls, ['startElevated', `startUnprivileged ${deps.userSocket}`]);
    const [connection, notice] = connections.at(-1)!;
    assert.deepEqual(connection, { kind: 'connected', privileged: false });
    assert.ok(
      notice?.startsWith(
        'Diskline is running without administrator rights because the request was declined.',
      ),
    );
    assert.ok(notice?.includes(limitedModeScope));
  } finally {
    supervisor.stop();
  }
});

test('a service that turns this user away is not raced with a second engine; the notice says how to get in', async () => {
  const { supervisor, connections, calls, deps } = harness();
  const service = await startEngine(deps.systemSocket, true);
  service.refuseWith =
    'The Diskline engine refuses uid 1000: only root and the users allowed in its config may use it.';
  await supervisor.start();
  try {
    assert.deepEqual(calls, [`startUnprivileged ${deps.userSocket}`]);
    const [connection, notice] = connections.at(-1)!;
    assert.deepEqual(connection, { kind: 'connected', privileged: false });
    assert.equal(
      notice,
      'The Diskline service is running but does not let you use it (The Diskline engine refuses uid 1000: only root ' +
        "and the users allowed in its config may use it.). Ask an administrator to add you to the 'diskline' group, " +
        `then log in again. ${limitedModeScope}`,
    );
  } finally {
    supervisor.stop();
  }
});

test('when no engine at all can be had, the shell is offline and says why', async () => {
  const { supervisor, connections, retryUntil } = harness({
    startUnprivileged: async () => {
      throw new Error('could not run /opt/diskline/bin/diskline: ENOENT');
    },
  });
  await supervisor.start();
  const [connection] = connections.at(-1)!;
  assert.equal(connection.kind, 'offline');
  assert.match(
    connection.kind === 'offline' ? connection.reason : '',
    /declined\. .* Starting the engine without rights failed too: could not run \/opt\/diskline\/bin\/diskline: ENOENT$/,
  );
  await assert.rejects(supervisor.call('drives.list', {}), /Cannot drives\.list: Diskline is not connected/);
  try {
    // The service comes up later (installed, or started by hand): the shell finds it without a restart.
    await startEngine(join(dir, 'system.sock'), true);
    await retryUntil('the late service', () => connections.at(-1)![0].kind === 'connected');
    assert.deepEqual(connections.at(-1), [{ kind: 'connected', privileged: true }, null]);
  } finally {
    supervisor.stop();
  }
});

test('a lost connection is retried without asking for rights again; listeners keep working', async () => {
  const { supervisor, connections, calls, deps, retryUntil } = harness();
  const engine = await startEngine(deps.systemSocket, true);
  const seen: string[] = [];
  supervisor.on('job.updated', (job) => seen.push(job.id));
  await supervisor.start();
  try {
    engine.emit('job.updated', makeJob({ id: 'before' }));
    await supervisor.call('engine.status', {});
    await engine.close();
    engines.splice(engines.indexOf(engine), 1);
    await waitFor('the loss to show', () => connections.some(([c]) => c.kind === 'offline'));
    assert.match(
      JSON.stringify(connections.find(([c]) => c.kind === 'offline')),
      /Lost the engine \(the engine closed the connection at .*system\.sock\); reconnecting…/,
    );
    const restarted = await startEngine(deps.systemSocket, true);
    await retryUntil(
      'a reconnect',
      () => connections.at(-1)![0].kind === 'connected' && restarted.clientCount === 1,
    );
    await supervisor.call('engine.status', {});
    restarted.emit('job.updated', makeJob({ id: 'after' }));
    await supervisor.call('engine.status', {});
    assert.deepEqual(seen, ['before', 'after']);
    assert.deepEqual(calls, []);
  } finally {
    supervisor.stop();
  }
});

test('pkexec exit 126 (dialog dismissed) is a decline; an exit is reported without waiting for a probe', async () => {
  const node = process.execPath;
  // A clock that never moves: an outcome can only come from the process's end, never from a probe's timing.
  const stopped = new ManualClock();
  const launch = (args: string[], command = node) =>
    startElevatedEngine({ kind: 'spawn', command, args }, async () => false, 60_000, stopped);
  assert.deepEqual(await launch(['-e', 'process.exit(126)']), { kind: 'declined' });
  assert.deepEqual(await launch(['-e', 'console.error("diskline: no FUSE"); process.exit(1)']), {
    kind: 'failed',
    detail: 'diskline: no FUSE',
  });
  assert.deepEqual(await launch([], join(dir, 'no-pkexec')), {
    kind: 'unavailable',
    detail: `${join(dir, 'no-pkexec')} is not installed`,
  });
});

/** The stand-in engine's pid once it has written it whole, else null. */
function readPid(pidFile: string): number | null {
  const text = existsSync(pidFile) ? readFileSync(pidFile, 'utf8') : '';
  return /^[1-9][0-9]*$/.test(text) ? Number(text) : null;
}

/** A stand-in engine that runs until killed and says so by writing its pid once it is up. */
function lingeringEngine(pidFile: string): string[] {
  return [
    '-e',
    `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); setInterval(() => {}, 1000)`,
  ];
}

test('a socket that answers while the engine runs is a start; the engine is left running', async () => {
  const pidFile = join(dir, 'engine.pid');
  const clock = new ManualClock();
  let probes = 0;
  const started = startElevatedEngine(
    { kind: 'spawn', command: process.execPath, args: lingeringEngine(pidFile) },
    async () => {
      probes++;
      return readPid(pidFile) !== null;
    },
    60_000,
    clock,
  );
  let outcome: ElevationOutcome | null = null;
  void started.then((o) => (outcome = o));
  let pid: number | null = null;
  try {
    // Time stands still until the engine is up, so the attempt cannot time out however slowly it starts; then
    // the next probe interval passes and the probe finds it.
    await waitFor('the engine to run', () => (pid = readPid(pidFile)) !== null);
    if (outcome === null) {
      await clock.untilWaiting();
      await clock.fireNext();
    }
    assert.deepEqual(await started, { kind: 'started' });
    assert.ok(probes >= 1);
    assert.doesNotThrow(() => process.kill(pid!, 0), 'the engine outlives its start');
  } finally {
    if (pid !== null) process.kill(pid);
  }
});

test('an engine that never answers is given up after the timeout, by the clock, and stopped', async () => {
  const pidFile = join(dir, 'engine.pid');
  const clock = new ManualClock();
  const started = startElevatedEngine(
    { kind: 'spawn', command: process.execPath, args: lingeringEngine(pidFile) },
    async () => false,
    5 * 60_000,
    clock,
  );
  await waitFor('the engine to run', () => readPid(pidFile) !== null);
  const pid = readPid(pidFile)!;
  await clock.untilWaiting();
  await clock.advance(5 * 60_000);
  assert.deepEqual(await started, { kind: 'failed', detail: 'the engine did not answer within 300 s' });
  await waitFor('the engine to be stopped', () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  });
});
