import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type EngineError, EngineLink } from './engine-link.ts';
import { makeJob } from './testing/fixtures.ts';
import { noAnswer, TestEngine } from './testing/test-engine.ts';

let dir: string;
let engine: TestEngine;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-link-'));
  engine = await TestEngine.listen(join(dir, 'engine.sock'));
});
after(async () => {
  await engine.close();
  await rm(dir, { recursive: true, force: true });
});

test('a call goes out as a request frame and its answer comes back parsed', async () => {
  const link = await EngineLink.connect(engine.socketPath, () => {});
  try {
    assert.deepEqual(await link.call('engine.status', {}), {
      version: '0.1.0-test',
      privileged: true,
      schedulesPaused: false,
      nextRun: null,
    });
    assert.deepEqual(engine.requests.at(-1), { method: 'engine.status', params: {} });
  } finally {
    link.close();
  }
});

test('an engine error keeps its code and message', async () => {
  const link = await EngineLink.connect(engine.socketPath, () => {});
  try {
    await assert.rejects(link.call('drives.list', {}), (error: EngineError) => {
      assert.equal(error.code, 'unknown-method');
      assert.equal(error.message, 'no drives.list here');
      return true;
    });
  } finally {
    link.close();
  }
});

test('an answer of the wrong shape is refused, naming the method', async () => {
  engine.handle('jobs.list', () => [{ id: 3 }]);
  const link = await EngineLink.connect(engine.socketPath, () => {});
  try {
    await assert.rejects(
      link.call('jobs.list', {}),
      /^EngineError: The engine answered jobs\.list with data/,
    );
  } finally {
    link.close();
  }
});

test('events are checked and delivered; unknown events are ignored', async () => {
  const received: unknown[] = [];
  const link = await EngineLink.connect(engine.socketPath, (event, data) => received.push([event, data]));
  try {
    await link.call('engine.status', {}); // the server knows the client once it has spoken
    const job = makeJob({ state: 'running', doneBytes: 5, totalBytes: 10 });
    engine.emit('engine.exploded' as 'drives.changed', {});
    engine.emit('job.updated', { not: 'a job' });
    engine.emit('job.updated', job);
    await link.call('engine.status', {});
    assert.deepEqual(received, [['job.updated', job]]);
  } finally {
    link.close();
  }
});

test('a dropped connection fails pending calls and resolves closed', async () => {
  engine.handle('drives.list', () => noAnswer);
  const link = await EngineLink.connect(engine.socketPath, () => {});
  await link.call('engine.status', {});
  const pending = assert.rejects(
    link.call('drives.list', {}),
    /drives\.list got no answer: the engine closed the connection/,
  );
  engine.dropClients();
  assert.match(await link.closed, /the engine closed the connection at .*engine\.sock/);
  await pending;
  await assert.rejects(link.call('engine.status', {}), /Cannot call engine\.status: the engine closed/);
  assert.equal(link.isOpen, false);
});

test('connecting where nothing listens fails with ENOENT', async () => {
  await assert.rejects(
    EngineLink.connect(join(dir, 'none.sock'), () => {}),
    { code: 'ENOENT' },
  );
});

test('an engine that refuses this client fails the pending call with its own code and message', async () => {
  engine.refuseWith = 'The Diskline engine refuses uid 1000.';
  try {
    const link = await EngineLink.connect(engine.socketPath, () => {});
    await assert.rejects(link.call('engine.status', {}), (error: EngineError) => {
      assert.equal(error.code, 'forbidden');
      assert.equal(error.message, 'The Diskline engine refuses uid 1000.');
      return true;
    });
    assert.equal(await link.closed, 'The Diskline engine refuses uid 1000.');
  } finally {
    engine.refuseWith = null;
  }
});
