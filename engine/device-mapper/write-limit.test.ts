import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSnapshotStatus } from './dmsetup.ts';
import { HELD_BYTES_PER_SECOND, holdMargin, writeLimitFor } from './write-limit.ts';

const MiB = 1 << 20;
const base = { capacityBytes: 16 * MiB, remainingCopyBytes: 64 * MiB, copyBytesPerSecond: 8 * MiB };

test('writers run free below the high watermark', () => {
  assert.deepEqual(writeLimitFor({ ...base, usedBytes: 7 * MiB }), { state: 'normal' });
});

test('past the high watermark writers get what the headroom absorbs over the copy still to do, at most half', () => {
  const limit = writeLimitFor({ ...base, usedBytes: 10 * MiB });
  assert.equal(limit.state, 'throttled');
  assert.ok(limit.state === 'throttled');
  // headroom 6 MiB, minus the hold margin (1 MiB), over 8 s of copying, halved.
  assert.equal(limit.writeBytesPerSecond, Math.floor((5 * MiB) / 8 / 2));
  assert.equal(limit.writeIopsPerSecond, Math.floor(limit.writeBytesPerSecond / 4096));
});

test('a slower copier means a tighter limit', () => {
  const fast = writeLimitFor({ ...base, usedBytes: 10 * MiB });
  const slow = writeLimitFor({ ...base, usedBytes: 10 * MiB, copyBytesPerSecond: 1 * MiB });
  assert.ok(fast.state === 'throttled' && slow.state === 'throttled');
  assert.ok(slow.writeBytesPerSecond < fast.writeBytesPerSecond);
});

test('within the hold margin of capacity writers are held to 4 KiB a second (the kernel takes no iops limit below 2), whatever the copier does', () => {
  const margin = holdMargin(base.capacityBytes);
  for (const copyBytesPerSecond of [0, 1, 100 * MiB]) {
    const limit = writeLimitFor({ ...base, copyBytesPerSecond, usedBytes: base.capacityBytes - margin });
    assert.deepEqual(limit, {
      state: 'held',
      writeBytesPerSecond: HELD_BYTES_PER_SECOND,
      writeIopsPerSecond: 2,
    });
  }
});

test('a tiny store is held before it could overflow even below the high watermark', () => {
  const limit = writeLimitFor({ ...base, capacityBytes: 300 * 1024, usedBytes: 100 * 1024 });
  assert.equal(limit.state, 'held');
});

test('the snapshot status line gives the fill, or says the kernel dropped it', () => {
  assert.deepEqual(parseSnapshotStatus('0 32768 snapshot 1024/8192 0\n'), {
    usedSectors: 1024,
    totalSectors: 8192,
    invalid: false,
  });
  assert.equal(parseSnapshotStatus('0 32768 snapshot Invalid\n').invalid, true);
  assert.equal(parseSnapshotStatus('0 32768 snapshot Overflow\n').invalid, true);
  assert.throws(() => parseSnapshotStatus('0 32768 snapshot what'));
});

test("below the high watermark a limit still stands until the watcher's next reading: it never lets writers carry a small store past the hold margin before then", () => {
  const small = { ...base, capacityBytes: 1 * MiB, usedBytes: 0 };
  // Spare room 768 KiB (1 MiB less the 256 KiB margin), one second to the next reading: half of it.
  const slow = writeLimitFor({ ...small, reactionSeconds: 1 });
  assert.ok(slow.state === 'throttled');
  assert.equal(slow.writeBytesPerSecond, (768 * 1024) / 2);
  // A watcher that reacts within a tenth of a second lets the writers run free on a big store.
  assert.deepEqual(
    writeLimitFor({ ...base, capacityBytes: 4096 * MiB, usedBytes: 0, reactionSeconds: 0.1 }),
    {
      state: 'normal',
    },
  );
  // A reaction so slow that not even the least throttled rate fits holds them.
  assert.equal(writeLimitFor({ ...small, reactionSeconds: 10 }).state, 'held');
  // Past the watermark the tighter of the two rules wins.
  const past = writeLimitFor({ ...base, usedBytes: 10 * MiB, reactionSeconds: 20 });
  assert.ok(past.state === 'throttled');
  assert.equal(past.writeBytesPerSecond, Math.floor((5 * MiB) / 20 / 2));
});
