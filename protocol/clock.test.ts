import assert from 'node:assert/strict';
import { test } from 'node:test';
import { systemClock } from './clock.ts';
import { ManualClock } from './testing/manual-clock.ts';

test('a manual clock fires timers in due order, each at its own time, only when advanced', async () => {
  const clock = new ManualClock(1000);
  const fired: string[] = [];
  clock.setTimeout(() => fired.push(`b@${clock.now()}`), 20);
  clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
  const cleared = clock.setTimeout(() => fired.push('cleared'), 15);
  clock.setTimeout(() => fired.push(`c@${clock.now()}`), 20);
  clock.clearTimeout(cleared);
  await clock.advance(9);
  assert.deepEqual(fired, []);
  await clock.advance(11);
  assert.deepEqual(fired, ['a@1010', 'b@1020', 'c@1020']);
  assert.equal(clock.now(), 1020);
  assert.equal(clock.pending, 0);
});

test('a sleep ends when time reaches it, a timer set by a fired one within the span fires too', async () => {
  const clock = new ManualClock(0);
  const woke: number[] = [];
  const loop = (async () => {
    for (let i = 0; i < 3; i++) {
      await clock.sleep(100);
      woke.push(clock.now());
    }
  })();
  await clock.untilWaiting();
  await clock.advance(250);
  assert.deepEqual(woke, [100, 200]);
  await clock.fireNext();
  await loop;
  assert.deepEqual(woke, [100, 200, 300]);
});

test('a sleep that is aborted rejects with the reason and leaves no timer', async () => {
  const clock = new ManualClock(0);
  const controller = new AbortController();
  const sleeping = clock.sleep(1000, controller.signal);
  controller.abort(new Error('stopped'));
  await assert.rejects(sleeping, /stopped/);
  assert.equal(clock.pending, 0);
  await assert.rejects(systemClock.sleep(10, AbortSignal.abort(new Error('already'))), /already/);
});
