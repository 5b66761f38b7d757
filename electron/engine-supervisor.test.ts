import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
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
    sleep: (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 20))),
    onConnection: (connection, notice) => connections.push([connection, notice]),
    ...overrides,
  };
  return { supervisor: new EngineSupervisor(deps), connections, calls, deps };
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
  const { supervisor, connections } = harness({
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
    await waitFor('the late service', () => connections.at(-1)![0].kind === 'connected');
    assert.deepEqual(connections.at(-1), [{ kind: 'connected', privileged: true }, null]);
  } finally {
    supervisor.stop();
  }
});

test('a lost connection is retried without asking for rights again; listeners keep working', async () => {
  const { supervisor, connections, calls, deps } = harness();
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
    await waitFor(
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

test('pkexec exit 126 (dialog dismissed) is a decline; a socket that answers is a start', async () => {
  const node = process.execPath;
  assert.deepEqual(
    await startElevatedEngine(
      { kind: 'spawn', command: node, args: ['-e', 'process.exit(126)'] },
      async () => false,
    ),
    { kind: 'declined' },
  );
  assert.deepEqual(
    await startElevatedEngine(
      { kind: 'spawn', command: node, args: ['-e', 'console.error("diskline: no FUSE"); process.exit(1)'] },
      async () => false,
    ),
    { kind: 'failed', detail: 'diskline: no FUSE' },
  );
  assert.deepEqual(
    await startElevatedEngine(
      { kind: 'spawn', command: join(dir, 'no-pkexec'), args: [] },
      async () => false,
    ),
    { kind: 'unavailable', detail: `${join(dir, 'no-pkexec')} is not installed` },
  );
  let probes = 0;
  assert.deepEqual(
    await startElevatedEngine(
      { kind: 'spawn', command: node, args: ['-e', 'setTimeout(() => {}, 200)'] },
      async () => ++probes >= 2,
    ),
    { kind: 'started' },
  );
});
