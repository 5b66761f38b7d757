// The core with real parts: a GPT disk image with ext4 and FAT16 made by their own mkfs tools and filled with
// files. Writes hammer the device (through beforeWrite, as a tap would let them) while the session copies; the
// used list is built from the snapshot itself after arm() (inspectDisk(snapshotReader()) → restrictTo). The
// image the sink wrote must pass each file system's checker and hold exactly the files of the consistent point.

import assert from 'node:assert/strict';
import { copyFile, open } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { MemoryContainer } from '../container/memory.ts';
import { openReader } from '../device/open.ts';
import { inspectDisk } from '../layout/inspect.ts';
import { withTestDisk } from '../testing/disk.ts';
import { checkFilesystem, readFilesystemChecksums } from '../testing/filesystems.ts';
import { MiB, withTempDir } from '../testing/image.ts';
import { attachLoopRange } from '../testing/loop.ts';
import { loopUnavailableReason } from '../testing/tools.ts';
import { SnapshotSession } from './session.ts';
import { ImageSink } from './testing/image-sink.ts';

test('ext4 + FAT16 disk hammered by writes during the copy: the snapshot image is clean and holds the files', async (t) => {
  const unavailable = loopUnavailableReason();
  if (unavailable) return t.skip(unavailable);
  await withTestDisk(
    {
      size: 64 * MiB,
      table: 'gpt',
      partitions: [
        { size: 32 * MiB, filesystem: 'ext4', fill: { files: 30, deletedFiles: 10 } },
        { filesystem: 'fat16', fill: { files: 20 } },
      ],
    },
    async (disk) => {
      await withTempDir(async (dir) => {
        // The "device" is a copy of the test image, so the fixture's own image stays as it was.
        const devicePath = join(dir, 'device.img');
        await copyFile(disk.image, devicePath);
        const reader = await openReader(devicePath);
        const deviceWriter = await open(devicePath, 'r+');
        const snapshotPath = join(dir, 'snapshot.img');
        const sink = await ImageSink.create(snapshotPath, reader.size);
        const unitSize = 64 * 1024;
        const session = new SnapshotSession({
          reader,
          usedRanges: [{ start: 0, length: reader.size }],
          unitSize,
          container: new MemoryContainer({ capacityBytes: 16 * unitSize, slotSize: unitSize }),
          sink,
          readRequestBytes: 256 * 1024,
          readsInFlight: 2,
          maxThrottleDelayMs: 2,
        });
        let writing = true;
        let writes = 0;
        const hammer = async (seed: number) => {
          let position = seed;
          while (writing) {
            position = (position * 1103515245 + 12345) % 2147483648;
            const offset = (position % (reader.size / 512 - 64)) * 512;
            const length = 512 * (1 + (position % 64));
            await session.beforeWrite(offset, length);
            await deviceWriter.write(Buffer.alloc(length, 0xa5), 0, length, offset);
            writes++;
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
        };
        try {
          session.arm();
          const writers = [hammer(1), hammer(2), hammer(3)];
          const layout = await inspectDisk(session.snapshotReader());
          session.restrictTo(layout.usedRanges);
          const result = await session.run();
          writing = false;
          await Promise.all(writers);
          assert.ok(writes > 50, `only ${writes} writes raced the copy`);
          assert.ok(result.preservedUnits > 0, 'no write needed the container');
          assert.ok(result.bytesCopied < reader.size, 'free space was copied too');
        } finally {
          writing = false;
          await deviceWriter.close();
          await reader.close();
        }
        for (const partition of disk.partitions) {
          const loop = await attachLoopRange(snapshotPath, partition.start, partition.size);
          try {
            const kind = partition.filesystem!;
            await checkFilesystem(loop.device, kind);
            assert.deepEqual(
              await readFilesystemChecksums(loop.device, kind),
              partition.files,
              `${kind} files`,
            );
          } finally {
            await loop.detach();
          }
        }
      });
    },
  );
});
