import assert from 'node:assert/strict';
import { createRequire, registerHooks } from 'node:module';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { eventSchemas, methods } from '../protocol/messages.ts';
import type { DisklineBridge } from './bridge.ts';

type FakePreloadElectron = {
  exposed: Record<string, unknown>;
  invocations: { channel: string; payload: unknown }[];
  ipcListeners: Map<string, unknown[]>;
  send(channel: string, message: unknown): void;
};

const fakeUrl = pathToFileURL(join(import.meta.dirname, 'testing', 'preload-electron.cts')).href;
let hooks: ReturnType<typeof registerHooks>;
let fake: FakePreloadElectron;
let bridge: DisklineBridge;

before(() => {
  // The preload runs in Electron's sandbox, where require('electron') is the only way out; here it is ours.
  hooks = registerHooks({
    resolve(specifier, context, next) {
      if (specifier === 'electron')
        return { url: fakeUrl, format: 'commonjs-typescript', shortCircuit: true };
      return next(specifier, context);
    },
  });
  const require = createRequire(import.meta.url);
  fake = require('electron') as FakePreloadElectron;
  require('./preload.cts');
  bridge = fake.exposed.diskline as DisklineBridge;
});
after(() => hooks.deregister());

test('the preload exposes only window.diskline, with call and on, and listens on one channel', () => {
  assert.deepEqual(Object.keys(fake.exposed), ['diskline']);
  assert.deepEqual(Object.keys(bridge).sort(), ['call', 'on']);
  assert.deepEqual([...fake.ipcListeners.keys()], ['diskline:event']);
});

test('every protocol method is callable and goes out on the call channel as { method, params }', async () => {
  const called = (Object.keys(methods) as (keyof typeof methods)[]).filter(
    (method) => method !== 'mount.stop',
  );
  for (const method of called) {
    assert.deepEqual(await bridge.call(method, {} as never), { answered: 'diskline:call' }, method);
  }
  assert.deepEqual(
    fake.invocations.map((invocation) => invocation.payload),
    called.map((method) => ({ method, params: {} })),
  );
  assert.ok(fake.invocations.every((invocation) => invocation.channel === 'diskline:call'));
});

test("an engine error comes back as an Error with the engine's own message and code", async () => {
  await assert.rejects(bridge.call('mount.stop', { path: '/mnt/x' }), {
    name: 'EngineError',
    message: 'Nothing is mounted at /mnt/x.',
    code: 'not-found',
  });
});

test('a method outside the protocol is refused in the renderer, before any IPC', async () => {
  const sent = fake.invocations.length;
  await assert.rejects(bridge.call('engine.shutdown' as 'engine.status', {}), {
    message: "Diskline has no engine method 'engine.shutdown'.",
  });
  assert.equal(fake.invocations.length, sent);
});

test('every protocol event can be subscribed; listeners get the data only, and unsubscribe', () => {
  for (const event of Object.keys(eventSchemas) as (keyof typeof eventSchemas)[]) {
    const received: unknown[] = [];
    const off = bridge.on(event, (data) => received.push(data));
    fake.send('diskline:event', { event, data: { n: 1 } });
    fake.send('diskline:event', { event: 'some.other', data: { n: 2 } });
    off();
    fake.send('diskline:event', { event, data: { n: 3 } });
    assert.deepEqual(received, [{ n: 1 }], event);
  }
  assert.throws(() => bridge.on('engine.internal' as 'blockmap', () => {}), {
    message: "Diskline has no engine event 'engine.internal'.",
  });
});

test('a listener that throws does not keep the others from their event', () => {
  const received: unknown[] = [];
  const offBad = bridge.on('drives.changed', () => {
    throw new Error('renderer bug');
  });
  const offGood = bridge.on('drives.changed', (data) => received.push(data));
  const consoleError = console.error;
  console.error = () => {};
  try {
    fake.send('diskline:event', { event: 'drives.changed', data: {} });
  } finally {
    console.error = consoleError;
    offBad();
    offGood();
  }
  assert.deepEqual(received, [{}]);
});
