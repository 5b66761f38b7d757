// Container pressure on its own: watermarks for small containers, throttling above high, suspension at
// capacity until the fill drains to low, and release when the session ends.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ContainerPressure } from './pressure.ts';
import type { PressureState } from './types.ts';

function pressure(capacityUnits: number, changes: PressureState[] = []) {
  return new ContainerPressure({
    capacityUnits,
    highWatermark: 0.75,
    lowWatermark: 0.5,
    maxThrottleDelayMs: 1,
    onChange: (state) => changes.push(state),
  });
}

const quiet = { throttled: () => {}, suspended: () => {} };

test('watermarks stay ordered for containers of one unit and up', () => {
  const marks = [1, 2, 3, 4, 100].map((units) => {
    const p = pressure(units);
    return [units, p.highUnits, p.lowUnits];
  });
  assert.deepEqual(marks, [
    [1, 1, 0],
    [2, 1, 0],
    [3, 2, 1],
    [4, 3, 2],
    [100, 75, 50],
  ]);
});

test('throttled above high, suspended at capacity until drained to low, then granted', async () => {
  const changes: PressureState[] = [];
  const p = pressure(4, changes);
  let throttled = 0;
  let suspended = 0;
  const events = { throttled: () => throttled++, suspended: () => suspended++ };
  assert.equal(await p.reserve(3, events), 3);
  assert.equal(throttled, 0);
  assert.equal(await p.reserve(5, events), 1, 'only what fits is granted');
  assert.equal(throttled, 1);
  for (let i = 0; i < 4; i++) p.stored();
  let granted = -1;
  const waiting = p.reserve(1, events).then((count) => {
    granted = count;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(p.state, 'suspended');
  assert.equal(suspended, 1);
  assert.equal(p.shouldDrain(), true);
  p.freed();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(granted, -1, 'still suspended above the low watermark');
  p.freed();
  await waiting;
  assert.equal(granted, 1);
  assert.deepEqual(changes, ['throttled', 'suspended', 'normal']);
  assert.equal(p.peakUnits, 4);
});

test('the end of the session releases suspended writers with nothing granted', async () => {
  const p = pressure(1);
  assert.equal(await p.reserve(1, quiet), 1);
  const waiting = p.reserve(1, quiet);
  p.end();
  assert.equal(await waiting, 0);
  assert.equal(await p.reserve(1, quiet), 0);
});
