// The fit planner's arithmetic: which partition changes, where the others go, 1 MiB boundaries, the GPT's tail,
// and refusals that name the size that would do.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ALIGNMENT, planFit, type SourceLayout } from './fit-layout.ts';

const MiB = ALIGNMENT;
const GiB = 1024 * MiB;
const gptDisk = (partitions: SourceLayout['partitions'], size = 4 * GiB): SourceLayout => ({
  table: 'gpt',
  sectorSize: 512,
  size,
  partitions,
});
const part = (index: number, start: number, size: number, filesystem: string | null, usedBytes = 0) => ({
  index,
  start,
  size,
  type: 'x',
  filesystem,
  usedBytes,
});

test('onto a smaller disk the last partition shrinks to the last whole MiB before the backup GPT', () => {
  const plan = planFit(
    gptDisk([part(1, MiB, 100 * MiB, 'fat32'), part(2, 101 * MiB, 4 * GiB - 102 * MiB, 'ext4', GiB)]),
    2 * GiB,
  );
  assert.equal(plan.mode, 'shrink');
  assert.equal(plan.refusal, null);
  assert.deepEqual(plan.partitions[0]!.to, { start: MiB, size: 100 * MiB });
  assert.deepEqual(plan.partitions[1]!.to, { start: 101 * MiB, size: 2 * GiB - 102 * MiB });
  assert.equal(plan.partitions[1]!.resizeWith, 'resize2fs');
});

test('a chosen partition shrinks and the partitions after it move down, keeping their sizes on MiB boundaries', () => {
  const plan = planFit(
    gptDisk([part(1, MiB, 3 * GiB, 'ntfs', 500 * MiB), part(2, MiB + 3 * GiB, GiB - 2 * MiB, 'swap')]),
    2 * GiB,
    { resize: 1 },
  );
  assert.equal(plan.mode, 'shrink');
  const [first, second] = plan.partitions;
  assert.equal(first!.change, 'shrunk');
  assert.equal(second!.change, 'moved');
  assert.equal(second!.to.start, first!.to.start + first!.to.size);
  assert.equal(second!.to.size, GiB - 2 * MiB);
  assert.equal(second!.to.start % MiB, 0);
  assert.ok(second!.to.start + second!.to.size <= 2 * GiB - 33 * 512);
});

test('free space at the end absorbs a smaller disk: nothing moves, only the table is fitted', () => {
  const plan = planFit(gptDisk([part(1, MiB, GiB, 'xfs', GiB)]), 2 * GiB);
  assert.equal(plan.mode, 'table-moved');
  assert.equal(plan.partitions[0]!.change, 'kept');
});

test('XFS that would have to shrink is refused with the size that takes it unchanged', () => {
  const plan = planFit(gptDisk([part(1, MiB, 4 * GiB - 2 * MiB, 'xfs', MiB)]), 2 * GiB);
  assert.match(plan.refusal!.reason, /XFS cannot be shrunk/);
  assert.equal(plan.refusal!.neededBytes, 4 * GiB - MiB + 33 * 512);
});

test('data bigger than the new partition is refused with the size that would hold it', () => {
  const plan = planFit(gptDisk([part(1, MiB, 4 * GiB - 2 * MiB, 'ext4', 3 * GiB)]), 2 * GiB);
  assert.ok(plan.refusal);
  assert.ok(plan.refusal.neededBytes >= 3 * GiB + MiB, `needs ${plan.refusal.neededBytes}`);
});

test('the last logical MBR partition is resized, but no logical partition is moved', () => {
  const source: SourceLayout = {
    table: 'mbr',
    sectorSize: 512,
    size: 2 * GiB,
    partitions: [part(1, MiB, GiB, 'ext4'), part(5, GiB + 2 * MiB, GiB - 3 * MiB, 'ext4')],
  };
  const logical = planFit(source, GiB + 512 * MiB);
  assert.equal(logical.refusal, null);
  assert.deepEqual(logical.partitions[1]!.to, { start: GiB + 2 * MiB, size: 510 * MiB });
  const plan = planFit(source, GiB + 512 * MiB, { resize: 1 });
  assert.match(plan.refusal!.reason, /logical partition 5 would have to move/);
});

test('onto a bigger disk the layout stays unless --grow, which grows the last partition to the end', () => {
  const source = gptDisk([part(1, MiB, GiB - 2 * MiB, 'ext4', MiB)], GiB);
  assert.equal(planFit(source, 2 * GiB).mode, 'table-moved');
  const grown = planFit(source, 2 * GiB, { grow: true });
  assert.equal(grown.mode, 'grow');
  assert.deepEqual(grown.partitions[0]!.to, { start: MiB, size: 2 * GiB - 2 * MiB });
  assert.equal(planFit(source, GiB).mode, 'as-is');
});
