// Change tracking's pure parts: bitmaps to ranges, and when a backup may use the changes.
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { bitmapToRanges, changesSinceParent, releasedIdentity, sourceIdentity } from './change-tracking.ts';

test('a bitmap becomes merged byte ranges, the last one clipped to the device size', () => {
  const bitmap = new Uint8Array([0b1000_0110, 0b0000_0001]);
  assert.deepEqual(bitmapToRanges(bitmap, 4096, 8 * 4096 + 1000), [
    { start: 4096, length: 8192 },
    { start: 7 * 4096, length: 4096 + 1000 },
  ]);
  assert.deepEqual(bitmapToRanges(new Uint8Array(2), 4096, 16 * 4096), []);
});

test('changes are used only when valid and relative to the parent point', () => {
  const tracking = {
    valid: true,
    baseGeneration: 'g1',
    newGeneration: 'g2',
    ranges: [{ start: 0, length: 65536 }],
  };
  assert.deepEqual(changesSinceParent(tracking, 'g1'), {
    ranges: [{ start: 0, length: 65536 }],
    reason: null,
  });
  assert.deepEqual(changesSinceParent(tracking, 'g0'), {
    ranges: null,
    reason:
      'the changes tracked are relative to another point than the previous one (a point was taken elsewhere)',
  });
  assert.equal(
    changesSinceParent(tracking, null).reason,
    'the previous point recorded no change-tracking generation',
  );
  assert.equal(
    changesSinceParent(
      { ...tracking, valid: false, reason: 'the device was written while it was not attached' },
      'g1',
    ).reason,
    'change tracking is invalid: the device was written while it was not attached',
  );
  assert.equal(changesSinceParent(null, 'g1').reason, 'change tracking is not available for this volume');
});

test('a write right after the release changes the recorded identity, within the timestamp tick too', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-identity-'));
  try {
    const image = join(dir, 'disk.img');
    let sameTick = 0;
    for (let round = 0; round < 50; round++) {
      await writeFile(image, `before ${round}`.padEnd(16));
      const before = (await stat(image, { bigint: true })).mtimeNs;
      const released = await releasedIdentity(image, 16);
      await writeFile(image, `after ${round}`.padEnd(16));
      const now = await sourceIdentity(image, 16);
      // A plain read of the mtime would have missed this write whenever the file system stamped both alike.
      if (now.mtimeNs === before.toString()) sameTick++;
      assert.notEqual(now.mtimeNs, released.mtimeNs, `round ${round}: the write is seen`);
    }
    // Said, not asserted: how often the coarse clock would have hidden a write here.
    console.log(`writes stamped with the released mtime's tick: ${sameTick} of 50`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
