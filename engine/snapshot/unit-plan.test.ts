// Range arithmetic and the starting unit states: what a session captures from used, excluded and changed
// ranges, and what the state of a 2 TB disk costs in memory.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CellState } from '../../protocol/messages.ts';
import { renderBlockMap } from './block-map.ts';
import {
  checkUnitSize,
  coveredBy,
  intersectRanges,
  normalizeRanges,
  planUnits,
  subtractRanges,
} from './unit-plan.ts';
import { COPIED, PENDING, PRESERVED, UnitStates } from './unit-states.ts';

const r = (start: number, length: number) => ({ start, length });

test('ranges are clipped, sorted and merged; intersect, subtract and coveredBy agree', () => {
  assert.deepEqual(normalizeRanges([r(50, 10), r(-5, 10), r(5, 3), r(60, 5), r(95, 20)], 100), [
    r(0, 8),
    r(50, 15),
    r(95, 5),
  ]);
  assert.deepEqual(intersectRanges([r(0, 10), r(20, 10)], [r(5, 20)]), [r(5, 5), r(20, 5)]);
  assert.deepEqual(subtractRanges([r(0, 100)], [r(10, 10), r(50, 60)]), [r(0, 10), r(20, 30)]);
  assert.deepEqual(subtractRanges([r(0, 10), r(20, 10)], [r(5, 20)]), [r(0, 5), r(25, 5)]);
  assert.equal(coveredBy([r(0, 10), r(20, 10)], 21, 30), true);
  assert.equal(coveredBy([r(0, 10), r(20, 10)], 5, 11), false);
  assert.equal(coveredBy([r(0, 10), r(20, 10)], 10, 12), false);
});

test('a unit is captured when any byte of it is used; its size must be a multiple of 4 KiB', () => {
  const plan = planUnits({
    size: 10 * 4096 + 512,
    unitSize: 4096,
    usedRanges: [r(4095, 2), r(9 * 4096, 10000)],
  });
  assert.equal(plan.unitCount, 11);
  const pending = [];
  for (let unit = 0; unit < plan.unitCount; unit++) if (plan.states.get(unit) === PENDING) pending.push(unit);
  assert.deepEqual(pending, [0, 1, 9, 10]);
  assert.throws(() => checkUnitSize(6000), /copy unit size 6000 is not a positive multiple of 4096 bytes/);
});

test('excluded bytes leave whole units free and mark shared units for byte-precise checks', () => {
  const plan = planUnits({
    size: 8 * 4096,
    unitSize: 4096,
    usedRanges: [r(0, 8 * 4096)],
    excludedRanges: [r(4096 + 100, 3 * 4096)],
  });
  const states = Array.from({ length: 8 }, (_, unit) => plan.states.get(unit));
  assert.deepEqual(states, [1, 1, 0, 0, 1, 1, 1, 1]);
  assert.deepEqual([...plan.mixedUnits].sort(), [1, 4]);
});

test('the state of a 2 TB disk at 64 KiB units costs 8 MiB, and a full block map is one pass', () => {
  const unitCount = (2 * 1024 ** 4) / (64 * 1024);
  const states = new UnitStates(unitCount);
  assert.equal(unitCount, 32 * 1024 * 1024);
  assert.equal(states.packed.byteLength, 8 * 1024 * 1024);
  states.set(5, PENDING);
  states.set(unitCount - 1, PRESERVED);
  states.set(unitCount / 2, COPIED);
  assert.equal(states.findNext(6, PRESERVED), unitCount - 1);
  const map = renderBlockMap(
    { states, writingUnits: new Map([[100, 1]]) },
    { cellCount: 1024, unitsPerCell: 32768 },
  );
  assert.equal(map[0], CellState.writing);
  assert.equal(map[512], CellState.copied);
  assert.equal(map[1023], CellState.preserved);
  assert.equal(map[1], CellState.free);
});

test('UnitStates.fill and fillByte agree with setting units one by one (states and counts)', () => {
  const unitCount = 203;
  const bulk = new UnitStates(unitCount);
  const single = new UnitStates(unitCount);
  let seed = 12345;
  const next = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let round = 0; round < 300; round++) {
    const first = next(unitCount);
    const end = first + next(unitCount - first + 1);
    const state = next(4) as 0 | 1 | 2 | 3;
    bulk.fill(first, end, state);
    for (let unit = first; unit < end; unit++) single.set(unit, state);
    assert.deepEqual(bulk.packed, single.packed, `round ${round}: fill(${first}, ${end}, ${state})`);
    assert.deepEqual(bulk.counts, single.counts, `round ${round}: counts`);
  }
  assert.equal(
    bulk.counts.reduce((sum, count) => sum + count, 0),
    unitCount,
  );
});
