// Containers hold exactly what was put, never more than their capacity, and fail with messages that say
// which container; file containers preallocate, grow to their limit and delete themselves; device containers
// refuse a mounted device and the source disk. Each backend also carries a whole snapshot session.

import assert from 'node:assert/strict';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { SnapshotSession } from '../snapshot/session.ts';
import { MemoryDisk } from '../snapshot/testing/memory-disk.ts';
import type { UnitSink } from '../snapshot/types.ts';
import { makeFilesystem, withMount } from '../testing/filesystems.ts';
import { makeSparseImage, withTempDir } from '../testing/image.ts';
import { attachLoop } from '../testing/loop.ts';
import { runTool } from '../testing/tools.ts';
import { DeviceContainer, sameDiskOrPartition } from './device.ts';
import { FileContainer } from './file.ts';
import { MemoryContainer } from './memory.ts';
import { openContainer } from './open.ts';
import { SlotAllocator } from './slot-allocator.ts';
import type { IntermediateContainer } from './types.ts';

const SLOT = 4096;

function unitBytes(unit: number, length = SLOT): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (unit * 31 + i) & 255;
  return data;
}

/** The behaviour every backend shares, for a container of exactly 4 slots. */
async function checkHoldsAndFrees(container: IntermediateContainer): Promise<void> {
  assert.equal(container.capacity, 4 * SLOT);
  for (const unit of [7, 3, 100, 5]) await container.put(unit, unitBytes(unit));
  assert.equal(container.usedBytes, 4 * SLOT);
  await assert.rejects(container.put(9, unitBytes(9)), /is full/);
  assert.ok((await container.take(100)).equals(unitBytes(100)));
  container.free(100);
  assert.equal(container.has(100), false);
  await assert.rejects(container.take(100), /does not hold unit 100/);
  await container.put(9, unitBytes(9, 1000)); // a short last unit
  assert.ok((await container.take(9)).equals(unitBytes(9, 1000)));
  for (const unit of [7, 3, 5]) assert.ok((await container.take(unit)).equals(unitBytes(unit)));
  for (const unit of [7, 3, 5, 9]) container.free(unit);
  assert.equal(container.usedBytes, 0);
}

test('slot allocator: lowest slots first, released slots reused, grows', () => {
  const slots = new SlotAllocator(3);
  assert.deepEqual(
    [slots.allocate(10), slots.allocate(11), slots.allocate(12), slots.allocate(13)],
    [0, 1, 2, -1],
  );
  slots.release(11);
  assert.equal(slots.allocate(14), 1);
  slots.grow(5);
  assert.deepEqual([slots.allocate(15), slots.allocate(16), slots.allocate(17)], [3, 4, -1]);
  assert.equal(slots.usedSlots, 5);
  assert.throws(() => slots.allocate(15), /already has a slot/);
});

test('memory container holds, frees and refuses beyond capacity', async () => {
  await checkHoldsAndFrees(new MemoryContainer({ capacityBytes: 4 * SLOT + 100, slotSize: SLOT }));
  assert.throws(
    () => new MemoryContainer({ capacityBytes: 100, slotSize: SLOT }),
    /cannot hold one 4096-byte unit/,
  );
});

test('file container: preallocated, grows in steps to its limit, deleted on close, never reuses a file', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'container.dlc');
    const full = await FileContainer.create({ path, capacityBytes: 4 * SLOT, slotSize: SLOT });
    assert.equal((await stat(path)).size, 4 * SLOT);
    assert.ok((await stat(path)).blocks * 512 >= 4 * SLOT, 'the file is allocated, not sparse');
    await checkHoldsAndFrees(full);
    await full.close();
    await assert.rejects(stat(path), /ENOENT/);

    const growing = await FileContainer.create({
      path,
      capacityBytes: 4 * SLOT,
      initialBytes: SLOT,
      growStepBytes: 2 * SLOT,
      slotSize: SLOT,
    });
    assert.equal(growing.fileBytes, SLOT);
    await growing.put(1, unitBytes(1));
    await growing.put(2, unitBytes(2));
    assert.equal(growing.fileBytes, 3 * SLOT);
    await Promise.all([growing.put(3, unitBytes(3)), growing.put(4, unitBytes(4))]);
    assert.equal(growing.fileBytes, 4 * SLOT);
    for (const unit of [1, 2, 3, 4]) assert.ok((await growing.take(unit)).equals(unitBytes(unit)));
    await assert.rejects(growing.put(5, unitBytes(5)), /is full/);

    await writeFile(join(dir, 'taken.dlc'), 'x');
    await assert.rejects(
      FileContainer.create({ path: join(dir, 'taken.dlc'), capacityBytes: 4 * SLOT, slotSize: SLOT }),
      /already exists; another backup may be using it/,
    );
    await growing.close();
  });
});

class ImageInMemory implements UnitSink {
  readonly image: Buffer;
  finished = false;
  constructor(size: number) {
    this.image = Buffer.alloc(size);
  }
  async writeUnit(offset: number, data: Buffer): Promise<void> {
    data.copy(this.image, offset);
  }
  async finish(): Promise<void> {
    this.finished = true;
  }
  async abort(): Promise<void> {}
}

/** A session whose writers race the copier with `container`: the sink must equal the consistent point. */
async function snapshotThrough(container: IntermediateContainer): Promise<number> {
  const size = 256 * SLOT;
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) bytes.writeUInt32LE(i, i);
  const original = Buffer.from(bytes);
  const disk = new MemoryDisk('disk', bytes);
  const sink = new ImageInMemory(size);
  const session = new SnapshotSession({
    reader: disk,
    usedRanges: [{ start: 0, length: size }],
    unitSize: SLOT,
    container,
    sink,
    maxThrottleDelayMs: 1,
    readsInFlight: 1,
    readRequestBytes: SLOT,
  });
  session.arm();
  const running = session.run();
  const writers = [0, 1, 2].map(async (writer) => {
    for (let i = 0; i < 40; i++) {
      const offset = ((writer * 977 + i * 7919) % 250) * SLOT + 13;
      await session.beforeWrite(offset, 2 * SLOT);
      await disk.write(offset, Buffer.alloc(2 * SLOT, 0xff));
    }
  });
  const [result] = await Promise.all([running, ...writers]);
  assert.ok(sink.finished);
  assert.ok(sink.image.equals(original), 'the snapshot differs from the consistent point');
  assert.equal(container.usedBytes, 0);
  return result.preservedUnits;
}

test('a snapshot session runs through a file container', async () => {
  await withTempDir(async (dir) => {
    const container = await FileContainer.create({
      path: join(dir, 'c.dlc'),
      capacityBytes: 6 * SLOT,
      initialBytes: 2 * SLOT,
      growStepBytes: 2 * SLOT,
      slotSize: SLOT,
    });
    try {
      assert.ok((await snapshotThrough(container)) > 0, 'no unit went through the container');
    } finally {
      await container.close();
    }
  });
});

test('device container on a loop device: refuses it mounted or as the source, carries a session unmounted', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root for loop devices');
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, 'spare.img'), 16 << 20);
    const loop = await attachLoop(image);
    try {
      await assert.rejects(
        DeviceContainer.open({ path: loop.device, slotSize: SLOT, forbiddenPaths: [loop.device] }),
        /refusing to use .* it is \(part of\) .*the disk being backed up/,
      );
      await makeFilesystem(loop.device, 'ext4');
      await withMount(loop.device, 'ext4', async () => {
        await assert.rejects(
          DeviceContainer.open({ path: loop.device, slotSize: SLOT }),
          /refusing to use .* as the container: it is mounted or in use/,
        );
      });
      const container = await DeviceContainer.open({
        path: loop.device,
        capacityBytes: 4 * SLOT,
        slotSize: SLOT,
      });
      try {
        assert.equal(container.kind, 'device');
        await checkHoldsAndFrees(container);
      } finally {
        await container.close();
      }
      const whole = await DeviceContainer.open({ path: loop.device, slotSize: SLOT });
      try {
        assert.equal(whole.capacity, 16 << 20);
        assert.ok((await snapshotThrough(whole)) > 0);
      } finally {
        await whole.close();
      }
    } finally {
      await loop.detach();
    }
  });
});

test('openContainer builds each kind from a plan spec and refuses a file or device spec without a path', async () => {
  await withTempDir(async (dir) => {
    const options = { slotSize: SLOT, sourcePath: join(dir, 'source.img') };
    const memory = await openContainer({ kind: 'memory', capacityBytes: 4 * SLOT }, options);
    await checkHoldsAndFrees(memory);
    const file = await openContainer(
      { kind: 'file', path: join(dir, 'c'), capacityBytes: 4 * SLOT },
      options,
    );
    await checkHoldsAndFrees(file);
    await file.close();
    await assert.rejects(openContainer({ kind: 'file', capacityBytes: SLOT }, options), /needs a path/);
    await assert.rejects(
      openContainer({ kind: 'device', path: options.sourcePath, capacityBytes: SLOT }, options),
      /refusing to use .*source\.img as the container/,
    );
  });
});

test('a file container that cannot grow (file system full) fails the session cleanly, naming the file', async (t) => {
  if (process.getuid?.() !== 0) return t.skip('needs root to mount a tiny tmpfs');
  await withTempDir(async (dir) => {
    const mountDir = join(dir, 'small');
    await mkdir(mountDir);
    await runTool('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mountDir]);
    try {
      const path = join(mountDir, 'c.dlc');
      const container = await FileContainer.create({
        path,
        capacityBytes: 64 * SLOT,
        initialBytes: SLOT,
        growStepBytes: 32 * SLOT,
        slotSize: SLOT,
      });
      const size = 32 * SLOT;
      const disk = new MemoryDisk('disk', Buffer.alloc(size, 7));
      let aborted: Error | null = null;
      const session = new SnapshotSession({
        reader: disk,
        usedRanges: [{ start: 0, length: size }],
        unitSize: SLOT,
        container,
        sink: {
          writeUnit: async () => {},
          finish: async () => {},
          abort: async (reason) => {
            aborted = reason;
          },
        },
        maxThrottleDelayMs: 0,
      });
      try {
        session.arm();
        await session.beforeWrite(0, 1);
        await session.beforeWrite(SLOT, 1); // needs a second slot: the file must grow, and cannot
        await assert.rejects(session.run(), /could not grow container file .*c\.dlc to \d+ bytes: .*ENOSPC/);
        assert.match(String(aborted), /ENOSPC/);
      } finally {
        await container.close();
      }
    } finally {
      await runTool('umount', [mountDir]);
    }
  });
});

test('a device container is refused for the source disk and its partitions, not for a similarly named disk', () => {
  assert.equal(sameDiskOrPartition('/dev/sda', '/dev/sda'), true);
  assert.equal(sameDiskOrPartition('/dev/sda2', '/dev/sda'), true);
  assert.equal(sameDiskOrPartition('/dev/sdab', '/dev/sda'), false);
  assert.equal(sameDiskOrPartition('/dev/loop1p2', '/dev/loop1'), true);
  assert.equal(sameDiskOrPartition('/dev/loop10', '/dev/loop1'), false);
  assert.equal(sameDiskOrPartition('/dev/nvme0n1p3', '/dev/nvme0n1'), true);
  assert.equal(sameDiskOrPartition('/dev/nvme0n12', '/dev/nvme0n1'), false);
});
