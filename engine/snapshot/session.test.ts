// The snapshot session's behaviours one at a time: concurrent writers on one unit, pressure, cancel, read
// and container failures, excluded and changed-only ranges, hints, settle calls, the block map, readSnapshot.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { CellState } from '../../protocol/messages.ts';
import { MemoryContainer } from '../container/memory.ts';
import type { IntermediateContainer } from '../container/types.ts';
import { withTempDir } from '../testing/image.ts';
import { SessionCancelled, SnapshotSession, type SnapshotSessionOptions } from './session.ts';
import { ImageSink } from './testing/image-sink.ts';
import { MemoryDisk } from './testing/memory-disk.ts';
import type { SessionStats, UnitSink } from './types.ts';

const UNIT = 4096;

function patterned(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 7 + (i >> 12)) & 255;
  return bytes;
}

class RecordingSink implements UnitSink {
  readonly image: Buffer;
  readonly order: number[] = [];
  finished = false;
  aborted: Error | null = null;
  constructor(size: number) {
    this.image = Buffer.alloc(size);
  }
  async writeUnit(offset: number, data: Buffer): Promise<void> {
    this.order.push(offset / UNIT);
    data.copy(this.image, offset);
  }
  async finish(): Promise<void> {
    this.finished = true;
  }
  async abort(reason: Error): Promise<void> {
    this.aborted = reason;
  }
}

/** A disk whose reads wait until released, so a test can hold the copier or a preserve mid-read. */
class GatedDisk extends MemoryDisk {
  private gate: Promise<void> | null = null;
  private open: (() => void) | null = null;
  reads: { offset: number; length: number }[] = [];
  hold(): void {
    this.gate = new Promise<void>((resolve) => {
      this.open = resolve;
    });
  }
  release(): void {
    this.open?.();
    this.gate = null;
  }
  override async read(offset: number, length: number): Promise<Buffer> {
    this.reads.push({ offset, length });
    if (this.gate) await this.gate;
    return super.read(offset, length);
  }
}

function countingContainer(inner: IntermediateContainer, puts: number[]): IntermediateContainer {
  return Object.assign(Object.create(inner) as IntermediateContainer, {
    put: (unit: number, data: Buffer) => {
      puts.push(unit);
      return inner.put(unit, data);
    },
  });
}

function session(disk: MemoryDisk, sink: UnitSink, options: Partial<SnapshotSessionOptions> = {}) {
  return new SnapshotSession({
    reader: disk,
    usedRanges: [{ start: 0, length: disk.size }],
    unitSize: UNIT,
    container: new MemoryContainer({ capacityBytes: 8 * UNIT, slotSize: UNIT }),
    sink,
    ...options,
  });
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

test('two writers on one pending unit: its old bytes are preserved once and both wait for that', async () => {
  const disk = new GatedDisk('gated', patterned(16 * UNIT));
  const original = Buffer.from(disk.bytes);
  const sink = new RecordingSink(disk.size);
  const puts: number[] = [];
  const container = countingContainer(new MemoryContainer({ capacityBytes: 8 * UNIT, slotSize: UNIT }), puts);
  const snap = session(disk, sink, { container, maxThrottleDelayMs: 0 });
  snap.arm();
  disk.hold();
  let firstDone = false;
  let secondDone = false;
  const first = snap.beforeWrite(5 * UNIT + 10, 100).then(() => {
    firstDone = true;
  });
  const second = snap.beforeWrite(5 * UNIT + 50, 3000).then(() => {
    secondDone = true;
  });
  await tick();
  assert.equal(firstDone || secondDone, false, 'a writer went ahead before the old bytes were preserved');
  disk.release();
  await Promise.all([first, second]);
  assert.deepEqual(puts, [5]);
  assert.equal(snap.states.get(5), 2 /* preserved */);
  disk.bytes.fill(0xee, 5 * UNIT, 6 * UNIT);
  const result = await snap.run();
  assert.equal(result.preservedUnits, 1);
  assert.equal(result.writes.intercepted, 2);
  assert.ok(sink.image.equals(original), 'the sink does not hold the bytes of the consistent point');
});

test('writes to free, copied or preserved units pass without waiting; before arm() nothing is intercepted', async () => {
  const disk = new MemoryDisk('plain', patterned(16 * UNIT));
  const sink = new RecordingSink(disk.size);
  const snap = session(disk, sink, { usedRanges: [{ start: 0, length: 4 * UNIT }] });
  const before = snap.beforeWrite(0, 100);
  const free = () => snap.beforeWrite(10 * UNIT, UNIT);
  assert.equal(before, free(), 'before arm() the fast path returns the shared resolved promise');
  snap.arm();
  assert.equal(free(), before, 'a write to free units takes the fast path');
  await snap.beforeWrite(0, 10);
  assert.equal(snap.beforeWrite(0, 10), before, 'a write to a preserved unit takes the fast path');
  await snap.run();
  assert.equal(snap.beforeWrite(UNIT, 10), before, 'a write to a copied unit takes the fast path');
  assert.equal(snap.stats().writes.intercepted, 1);
});

test('a write to a unit being copied waits for that copy, then the sink has the old bytes', async () => {
  const disk = new GatedDisk('gated', patterned(8 * UNIT));
  const original = Buffer.from(disk.bytes);
  const sink = new RecordingSink(disk.size);
  const puts: number[] = [];
  const container = countingContainer(new MemoryContainer({ capacityBytes: 4 * UNIT, slotSize: UNIT }), puts);
  const snap = session(disk, sink, { container, readsInFlight: 1, readRequestBytes: 8 * UNIT });
  snap.arm();
  disk.hold();
  const running = snap.run();
  await tick();
  assert.equal(disk.reads.length, 1, 'the copier is reading');
  let passed = false;
  const write = snap.beforeWrite(3 * UNIT, 10).then(() => {
    passed = true;
  });
  await tick();
  assert.equal(passed, false);
  disk.release();
  await write;
  disk.bytes.fill(1, 3 * UNIT, 3 * UNIT + 10);
  await running;
  assert.deepEqual(puts, [], 'nothing needed the container');
  assert.ok(sink.image.equals(original));
});

test('pressure: writers are throttled above the high watermark and suspended at capacity, then resume', async () => {
  const disk = new GatedDisk('gated', patterned(64 * UNIT));
  const original = Buffer.from(disk.bytes);
  const sink = new RecordingSink(disk.size);
  const snap = session(disk, sink, {
    container: new MemoryContainer({ capacityBytes: 4 * UNIT, slotSize: UNIT }),
    maxThrottleDelayMs: 5,
    readsInFlight: 1,
    readRequestBytes: UNIT,
  });
  const pressures: string[] = [];
  snap.on('pressure', (pressure: string) => pressures.push(pressure));
  snap.arm();
  // Four preserves fill the container (capacity 4, high 3): the fourth is throttled.
  for (let unit = 40; unit < 44; unit++) await snap.beforeWrite(unit * UNIT, 1);
  assert.equal(snap.stats().container.usedBytes, 4 * UNIT);
  assert.equal(snap.stats().writes.throttled, 1);
  assert.equal(snap.stats().container.pressure, 'throttled');
  // The fifth cannot fit: suspended until the copier drains to the low watermark (2 units).
  let fifthDone = false;
  const fifth = snap.beforeWrite(50 * UNIT, 1).then(() => {
    fifthDone = true;
  });
  await tick();
  assert.equal(fifthDone, false);
  assert.equal(snap.stats().container.pressure, 'suspended');
  assert.equal(snap.stats().writes.suspended, 1);
  const running = snap.run();
  await fifth;
  for (let unit = 40; unit < 44; unit++) disk.bytes.fill(9, unit * UNIT, unit * UNIT + 1);
  disk.bytes.fill(9, 50 * UNIT, 50 * UNIT + 1);
  await running;
  assert.ok(sink.image.equals(original));
  assert.deepEqual(pressures.slice(0, 2), ['throttled', 'suspended']);
  assert.equal(pressures.at(-1), 'normal');
  assert.ok(sink.order.indexOf(40) < sink.order.indexOf(0), 'the copier drained the full container first');
});

test('cancel mid-copy releases a suspended writer, aborts the sink and rejects run()', async () => {
  const disk = new MemoryDisk('disk', patterned(32 * UNIT));
  const sink = new RecordingSink(disk.size);
  let openSink!: () => void;
  const sinkGate = new Promise<void>((resolve) => {
    openSink = resolve;
  });
  const writeUnit = sink.writeUnit.bind(sink);
  sink.writeUnit = async (offset, data) => {
    await sinkGate;
    return writeUnit(offset, data);
  };
  const snap = session(disk, sink, {
    container: new MemoryContainer({ capacityBytes: UNIT, slotSize: UNIT }),
    maxThrottleDelayMs: 0,
    readsInFlight: 1,
    readRequestBytes: UNIT,
  });
  snap.arm();
  await snap.beforeWrite(20 * UNIT, 1);
  const running = snap.run();
  const suspended = snap.beforeWrite(25 * UNIT, 1);
  await tick();
  assert.equal(snap.stats().container.pressure, 'suspended');
  snap.cancel('the user stopped the backup');
  await suspended;
  openSink();
  await assert.rejects(running, (error: Error) => {
    assert.ok(error instanceof SessionCancelled);
    assert.equal(error.message, 'the user stopped the backup');
    return true;
  });
  assert.equal(sink.finished, false);
  assert.equal(sink.aborted?.message, 'the user stopped the backup');
  assert.equal(snap.beforeWrite(3 * UNIT, 10), snap.beforeWrite(0, 0), 'writes pass after the session ended');
});

test('a source read error ends the session cleanly: writers released, sink aborted, a message naming the byte', async () => {
  const failAt = 12 * UNIT;
  const disk = new MemoryDisk('/dev/test-disk', patterned(32 * UNIT), {
    readFault: (offset, length) =>
      offset <= failAt && failAt < offset + length ? new Error('EIO: i/o error, read') : null,
  });
  const sink = new RecordingSink(disk.size);
  const snap = session(disk, sink, { readRequestBytes: UNIT });
  snap.arm();
  const running = snap.run();
  const writer = snap.beforeWrite(12 * UNIT + 5, 10); // its preserve hits the bad sector too
  await assert.rejects(running, /could not read \/dev\/test-disk at byte 49152 \(4096 bytes\) .*EIO/);
  await writer;
  assert.equal(sink.finished, false);
  assert.match(sink.aborted?.message ?? '', /EIO/);
});

test('a container I/O error ends the session cleanly and says which container', async () => {
  const disk = new MemoryDisk('disk', patterned(16 * UNIT));
  const sink = new RecordingSink(disk.size);
  const inner = new MemoryContainer({ capacityBytes: 4 * UNIT, slotSize: UNIT });
  const container = Object.assign(Object.create(inner) as IntermediateContainer, {
    put: async () => {
      throw new Error('could not store unit 3 in container file /x: ENOSPC');
    },
  });
  const snap = session(disk, sink, { container });
  snap.arm();
  await snap.beforeWrite(3 * UNIT, 1);
  await assert.rejects(snap.run(), /container file \/x: ENOSPC/);
  assert.match(sink.aborted?.message ?? '', /ENOSPC/);
});

test('a sink error ends the session and aborts the sink', async () => {
  const disk = new MemoryDisk('disk', patterned(16 * UNIT));
  const sink = new RecordingSink(disk.size);
  sink.writeUnit = async () => {
    throw new Error('repository is full');
  };
  const snap = session(disk, sink);
  snap.arm();
  await assert.rejects(
    snap.run(),
    /could not store the unit at byte 0 of disk in the destination: repository is full/,
  );
  assert.match(sink.aborted?.message ?? '', /repository is full/);
});

test('excluded ranges are neither intercepted nor copied; in a shared unit they read as zeros', async () => {
  const disk = new MemoryDisk('disk', patterned(16 * UNIT));
  const original = Buffer.from(disk.bytes);
  const sink = new RecordingSink(disk.size);
  // Units 4..7 are the container's own blocks, plus the second half of unit 8.
  const excludedRanges = [
    { start: 4 * UNIT, length: 4 * UNIT },
    { start: 8 * UNIT + UNIT / 2, length: UNIT / 2 },
  ];
  const puts: number[] = [];
  const container = countingContainer(new MemoryContainer({ capacityBytes: 8 * UNIT, slotSize: UNIT }), puts);
  const snap = session(disk, sink, { excludedRanges, container });
  snap.arm();
  assert.equal(snap.beforeWrite(5 * UNIT, 100), snap.beforeWrite(0, 0), 'write to excluded blocks passes');
  // The excluded half of unit 8 (shared with used bytes): the unit is copied at once, without the container.
  await snap.beforeWrite(8 * UNIT + UNIT / 2, 100);
  disk.bytes.fill(0xdd, 8 * UNIT + UNIT / 2, 8 * UNIT + UNIT / 2 + 100);
  assert.equal(snap.states.get(8), 3 /* copied */);
  assert.deepEqual(puts, []);
  await snap.run();
  assert.equal(snap.stats().writes.intercepted, 1);
  assert.deepEqual(
    sink.order.sort((a, b) => a - b),
    [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15],
  );
  assert.ok(
    sink.image
      .subarray(8 * UNIT, 8 * UNIT + UNIT / 2)
      .equals(original.subarray(8 * UNIT, 8 * UNIT + UNIT / 2)),
  );
  assert.ok(sink.image.subarray(8 * UNIT + UNIT / 2, 9 * UNIT).every((byte) => byte === 0));
});

test('progress events carry stats; the last one shows everything copied with an ETA of zero', async () => {
  const disk = new MemoryDisk('disk', patterned(64 * UNIT));
  const sink = new RecordingSink(disk.size);
  const snap = session(disk, sink, { usedRanges: [{ start: 0, length: 40 * UNIT }] });
  const seen: SessionStats[] = [];
  snap.on('progress', (stats: SessionStats) => seen.push(stats));
  const before = snap.stats();
  assert.deepEqual(before.units, { free: 24, pending: 40, preserved: 0, copied: 0 });
  assert.equal(before.totalBytes, 40 * UNIT);
  assert.equal(before.etaSeconds, null);
  assert.deepEqual(before.container, {
    usedBytes: 0,
    capacityBytes: 8 * UNIT,
    highWatermark: 6 * UNIT,
    lowWatermark: 4 * UNIT,
    pressure: 'normal',
  });
  snap.arm();
  await snap.run();
  const last = seen.at(-1)!;
  assert.ok(last, 'no progress event');
  assert.equal(last.bytesCopied, 40 * UNIT);
  assert.deepEqual(last.units, { free: 24, pending: 0, preserved: 0, copied: 40 });
  assert.equal(last.etaSeconds, 0);
  assert.ok(last.bytesPerSecond > 0);
});

test('onlyRanges (changed-block tracking) copies only the units they touch', async () => {
  const disk = new MemoryDisk('disk', patterned(16 * UNIT));
  const sink = new RecordingSink(disk.size);
  const snap = session(disk, sink, { onlyRanges: [{ start: 3 * UNIT + 1, length: UNIT }] });
  snap.arm();
  const result = await snap.run();
  assert.deepEqual(sink.order, [3, 4]);
  assert.equal(result.bytesCopied, 2 * UNIT);
});

test('hints move ranges forward; onSettle reports every unit that no longer needs interception', async () => {
  const disk = new MemoryDisk('disk', patterned(16 * UNIT));
  const sink = new RecordingSink(disk.size);
  const settled = new Uint8Array(16);
  const snap = session(disk, sink, {
    readsInFlight: 1,
    readRequestBytes: 2 * UNIT,
    onSettle: (first, count) => settled.fill(1, first, first + count),
  });
  const runs: number[][] = [];
  snap.forEachPendingRun((first, count) => runs.push([first, count]));
  assert.deepEqual(runs, [[0, 16]]);
  snap.hint({ start: 12 * UNIT, length: 2 * UNIT }, 'first');
  snap.hint({ start: 9 * UNIT, length: 1 }, 'writing-now');
  snap.arm();
  await snap.run();
  assert.deepEqual(sink.order.slice(0, 3), [9, 12, 13]);
  assert.ok(settled.every((bit) => bit === 1));
});

test('block map: cells show the most urgent state, and a watch returns only changed cells', async () => {
  const disk = new GatedDisk('gated', patterned(16 * UNIT));
  const sink = new RecordingSink(disk.size);
  const snap = session(disk, sink, {
    usedRanges: [{ start: 0, length: 12 * UNIT }],
    readsInFlight: 1,
    readRequestBytes: UNIT,
  });
  assert.deepEqual(
    [...snap.blockMap(4)],
    [CellState.pending, CellState.pending, CellState.pending, CellState.free],
  );
  assert.deepEqual([...snap.blockMap(5)], [1, 1, 1, 0], '16 units asked in 5 cells: 4 per cell, so 4 cells');
  const watch = snap.watchBlockMap(8);
  assert.deepEqual([...watch.full()], [1, 1, 1, 1, 1, 1, 0, 0]);
  assert.deepEqual(watch.changes(), []);
  snap.arm();
  disk.hold();
  const writer = snap.beforeWrite(5 * UNIT, 1);
  await tick();
  assert.deepEqual(watch.changes(), [2, CellState.writing]);
  disk.release();
  await writer;
  assert.deepEqual(watch.changes(), [2, CellState.preserved]);
  await snap.run();
  const changes = watch.changes();
  const changedCells = new Map<number, number>();
  for (let i = 0; i < changes.length; i += 2) changedCells.set(changes[i]!, changes[i + 1]!);
  assert.equal(changes.length, 12, 'each changed cell is reported once');
  assert.deepEqual(
    [...changedCells.entries()].sort((a, b) => a[0] - b[0]),
    [0, 1, 2, 3, 4, 5].map((cell) => [cell, 2]),
  );
  assert.deepEqual([...snap.blockMap(8)], [2, 2, 2, 2, 2, 2, 0, 0]);
  watch.close();
});

test('readSnapshot gives the consistent point: device, container, or the image sink for overwritten units', async () => {
  await withTempDir(async (dir) => {
    const disk = new MemoryDisk('disk', patterned(16 * UNIT));
    const original = Buffer.from(disk.bytes);
    const imagePath = join(dir, 'snapshot.img');
    const sink = await ImageSink.create(imagePath, disk.size);
    const snap = session(disk, sink, { usedRanges: [{ start: 0, length: 12 * UNIT }] });
    snap.arm();
    await snap.beforeWrite(2 * UNIT, 10); // preserved
    disk.bytes.fill(0xaa, 2 * UNIT, 2 * UNIT + 10);
    await snap.beforeWrite(14 * UNIT, 10); // free: not part of the snapshot
    disk.bytes.fill(0xaa, 14 * UNIT, 14 * UNIT + 10);
    assert.ok((await snap.readSnapshot(UNIT, 4 * UNIT)).equals(original.subarray(UNIT, 5 * UNIT)));
    const running = snap.run();
    await snap.beforeWrite(7 * UNIT, UNIT); // copied or preserved by now
    disk.bytes.fill(0xbb, 7 * UNIT, 8 * UNIT);
    await running;
    assert.ok((await snap.readSnapshot(0, 12 * UNIT)).equals(original.subarray(0, 12 * UNIT)));
    const free = await snap.readSnapshot(14 * UNIT, UNIT);
    assert.ok(
      free.every((byte) => byte === 0),
      'a free unit written since the consistent point reads as zeros',
    );
    const image = await readFile(imagePath);
    assert.ok(image.subarray(0, 12 * UNIT).equals(original.subarray(0, 12 * UNIT)));
    assert.ok(image.subarray(12 * UNIT).every((byte) => byte === 0));
  });
});

test('an aborted image sink leaves no file behind; an existing image is never overwritten', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'x.img');
    const sink = await ImageSink.create(path, 8 * UNIT);
    await sink.writeUnit(0, Buffer.alloc(UNIT, 1));
    await sink.abort(new Error('stopped'));
    await assert.rejects(readFile(`${path}.partial`), /ENOENT/);
    await assert.rejects(readFile(path), /ENOENT/);
    const done = await ImageSink.create(path, 8 * UNIT);
    await done.finish();
    await assert.rejects(
      ImageSink.create(path, 8 * UNIT),
      /already exists; choose another name or remove it first/,
    );
  });
});

test('restrictTo after arm(): units outside the list become free and leave the container; not after run()', async () => {
  const disk = new MemoryDisk('disk', patterned(16 * UNIT));
  const original = Buffer.from(disk.bytes);
  const sink = new RecordingSink(disk.size);
  const settled: number[][] = [];
  const snap = session(disk, sink, { onSettle: (first, count) => settled.push([first, count]) });
  snap.arm();
  await snap.beforeWrite(3 * UNIT, 1);
  await snap.beforeWrite(10 * UNIT, 1);
  disk.bytes.fill(5, 3 * UNIT, 3 * UNIT + 1);
  disk.bytes.fill(5, 10 * UNIT, 10 * UNIT + 1);
  assert.equal(snap.stats().container.usedBytes, 2 * UNIT);
  snap.restrictTo([{ start: 3 * UNIT, length: 3 * UNIT }]);
  assert.equal(snap.stats().container.usedBytes, UNIT);
  assert.deepEqual(snap.stats().units, { free: 13, pending: 2, preserved: 1, copied: 0 });
  assert.deepEqual(settled.slice(2), [
    [0, 3],
    [6, 4],
    [11, 5],
  ]);
  const result = await snap.run();
  assert.deepEqual(
    sink.order.sort((a, b) => a - b),
    [3, 4, 5],
  );
  assert.equal(result.bytesCopied, 3 * UNIT);
  assert.ok(sink.image.subarray(3 * UNIT, 6 * UNIT).equals(original.subarray(3 * UNIT, 6 * UNIT)));
  assert.throws(() => snap.restrictTo([]), /can be narrowed only before run\(\); the session is done/);
});

test('snapshotReader reads the consistent point while writers change the device', async () => {
  const disk = new MemoryDisk('/dev/example', patterned(16 * UNIT));
  const original = Buffer.from(disk.bytes);
  const sink = new RecordingSink(disk.size);
  const snap = session(disk, sink);
  const reader = snap.snapshotReader();
  assert.equal(reader.path, '/dev/example (snapshot)');
  assert.equal(reader.size, disk.size);
  snap.arm();
  await snap.beforeWrite(UNIT + 100, 2 * UNIT);
  disk.bytes.fill(0xcc, UNIT + 100, 3 * UNIT + 100);
  assert.ok((await reader.read(0, disk.size)).equals(original));
  snap.restrictTo([{ start: 0, length: 8 * UNIT }]);
  await snap.run();
  assert.ok(sink.image.subarray(0, 8 * UNIT).equals(original.subarray(0, 8 * UNIT)));
});
