import assert from 'node:assert/strict';
import { open, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { openReader } from '../device/open.ts';
import { makeFilesystem } from '../testing/filesystems.ts';
import {
  MiB,
  makeSparseImage,
  partitionImage,
  readPartitionTable as sfdiskTable,
  withTempDir,
} from '../testing/image.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';
import { readPartitionTable } from './read.ts';
import type { PartitionTable } from './types.ts';

async function tableOf(image: string): Promise<PartitionTable> {
  const reader = await openReader(image);
  try {
    return await readPartitionTable(reader);
  } finally {
    await reader.close();
  }
}

async function flipByte(image: string, offset: number): Promise<void> {
  const handle = await open(image, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

async function makeGptImage(dir: string): Promise<string> {
  const image = await makeSparseImage(join(dir, 'gpt.img'), 64 * MiB);
  await partitionImage(image, 'gpt', [
    { size: 8 * MiB },
    { size: 16 * MiB, type: 'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7' },
    { type: '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F' },
  ]);
  return image;
}

const skipReason = () => missingToolReason('sfdisk');

test('GPT partitions match what sfdisk wrote, with types, and the table areas at both ends', async (t) => {
  if (skipReason()) return t.skip(skipReason()!);
  await withTempDir(async (dir) => {
    const image = await makeGptImage(dir);
    const table = await tableOf(image);
    const expected = await sfdiskTable(image);
    assert.equal(table.kind, 'gpt');
    assert.deepEqual(table.warnings, []);
    assert.deepEqual(
      table.partitions.map((p) => ({ start: p.start, size: p.size, type: p.type })),
      expected.partitions.map((p) => ({ start: p.start, size: p.size, type: p.type })),
    );
    assert.deepEqual(
      table.partitions.map((p) => p.index),
      [1, 2, 3],
    );
    assert.equal(table.diskId, expected.id);
    // Protective MBR, header and entries up to the first usable LBA; backup entries and header after the last.
    assert.deepEqual(table.tableRanges[0], { start: 0, length: expected.firstLba! * 512 });
    assert.deepEqual(table.tableRanges[1], {
      start: (expected.lastLba! + 1) * 512,
      length: 64 * MiB - (expected.lastLba! + 1) * 512,
    });
  });
});

test('a flipped byte in the primary GPT header falls back to the backup with a warning', async (t) => {
  if (skipReason()) return t.skip(skipReason()!);
  await withTempDir(async (dir) => {
    const image = await makeGptImage(dir);
    const intact = await tableOf(image);
    await flipByte(image, 512 + 40); // first usable LBA, covered by the header CRC
    const table = await tableOf(image);
    assert.deepEqual(table.partitions, intact.partitions);
    assert.equal(table.warnings.length, 1);
    assert.match(
      table.warnings[0]!,
      /primary GPT header of .* is damaged \(header CRC32 mismatch\); the backup header/,
    );
  });
});

test('a flipped byte in the primary entry array is caught by its CRC32 and the backup is used', async (t) => {
  if (skipReason()) return t.skip(skipReason()!);
  await withTempDir(async (dir) => {
    const image = await makeGptImage(dir);
    const intact = await tableOf(image);
    await flipByte(image, 1024 + 32); // first LBA of partition 1
    const table = await tableOf(image);
    assert.deepEqual(table.partitions, intact.partitions);
    assert.match(table.warnings[0]!, /entry array CRC32 mismatch/);
  });
});

test('a damaged backup GPT is reported while the intact primary is used', async (t) => {
  if (skipReason()) return t.skip(skipReason()!);
  await withTempDir(async (dir) => {
    const image = await makeGptImage(dir);
    await flipByte(image, 64 * MiB - 512 + 20);
    const table = await tableOf(image);
    assert.equal(table.partitions.length, 3);
    assert.match(table.warnings[0]!, /backup GPT header of .* is not valid \(header CRC32 mismatch\)/);
  });
});

test('both GPT headers damaged is a clear error naming the device', async (t) => {
  if (skipReason()) return t.skip(skipReason()!);
  await withTempDir(async (dir) => {
    const image = await makeGptImage(dir);
    await flipByte(image, 512 + 40);
    await flipByte(image, 64 * MiB - 512 + 40);
    await assert.rejects(tableOf(image), (error: Error) => {
      assert.equal(error.name, 'PartitionTableError');
      assert.ok(
        error.message.startsWith(`no valid GPT on ${image}: primary header (LBA 1): header CRC32 mismatch`),
      );
      assert.match(error.message, /backup header \(LBA 131071\): header CRC32 mismatch/);
      return true;
    });
  });
});

test('a truncated GPT image is an error, not a partition past the end', async (t) => {
  if (skipReason()) return t.skip(skipReason()!);
  await withTempDir(async (dir) => {
    const image = await makeGptImage(dir);
    await truncate(image, 40 * MiB);
    await assert.rejects(tableOf(image), /GPT partition 3 on .* outside the 41943040-byte device/);
  });
});

test('MBR primary, extended and logical partitions are numbered as the kernel numbers them', async (t) => {
  if (skipReason()) return t.skip(skipReason()!);
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, 'mbr.img'), 64 * MiB);
    await partitionImage(image, 'dos', [
      { size: 8 * MiB, type: 'c' },
      { type: 'E' },
      { size: 10 * MiB, type: '83' },
      { size: 12 * MiB, type: '7' },
      { type: '82' },
    ]);
    const table = await tableOf(image);
    const expected = (await sfdiskTable(image)).partitions.filter((p) => p.type !== '5');
    assert.equal(table.kind, 'mbr');
    assert.deepEqual(table.warnings, []);
    assert.deepEqual(
      table.partitions.map((p) => p.index),
      [1, 5, 6, 7],
    );
    assert.deepEqual(
      table.partitions.map((p) => ({ start: p.start, size: p.size, type: p.type })),
      expected.map((p) => ({ start: p.start, size: p.size, type: `0x${p.type.padStart(2, '0')}` })),
    );
    // The MBR and one EBR in front of each logical partition.
    assert.equal(table.tableRanges.length, 4);
    assert.deepEqual(table.tableRanges[0], { start: 0, length: 512 });
    for (const [i, logical] of table.partitions.slice(1).entries()) {
      assert.ok(table.tableRanges[i + 1]!.start < logical.start);
    }
  });
});

test('a device without a table is one partition covering all of it', async () => {
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, 'blank.img'), 4 * MiB);
    const table = await tableOf(image);
    assert.equal(table.kind, 'none');
    assert.deepEqual(table.partitions, [{ index: 1, start: 0, size: 4 * MiB, type: 'none' }]);
  });
});

test('a 4096-byte-sector GPT (written through a 4Kn loop device) is read from the image file too', async (t) => {
  const skip = loopUnavailableReason() ?? skipReason();
  if (skip) return t.skip(skip);
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, '4kn.img'), 64 * MiB);
    const { stdout } = await runTool('losetup', ['--find', '--show', '--sector-size', '4096', image]);
    const device = stdout.trim();
    try {
      await runTool('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', device], {
        input: 'label: gpt\n,16M\n,\n',
      });
      const fromDevice = await tableOf(device);
      assert.equal(fromDevice.sectorSize, 4096);
      assert.deepEqual(
        fromDevice.partitions.map((p) => [p.start, p.size]),
        [
          [MiB, 16 * MiB],
          [17 * MiB, 46 * MiB],
        ],
      );
    } finally {
      await runTool('losetup', ['--detach', device]);
    }
    const fromImage = await tableOf(image);
    assert.equal(fromImage.kind, 'gpt');
    assert.equal(fromImage.sectorSize, 4096);
    assert.equal(fromImage.partitions.length, 2);
  });
});

for (const kind of ['fat32', 'ntfs'] as const) {
  test(`a ${kind} volume over the whole device (no table, its boot sector ends in 55 AA) has no table`, async (t) => {
    const skip = missingToolReason(kind === 'ntfs' ? 'mkfs.ntfs' : 'mkfs.vfat');
    if (skip) return t.skip(skip);
    await withTempDir(async (dir) => {
      const image = await makeSparseImage(join(dir, 'superfloppy.img'), 64 * MiB);
      await makeFilesystem(image, kind);
      const table = await tableOf(image);
      assert.equal(table.kind, 'none');
      assert.deepEqual(table.partitions, [{ index: 1, start: 0, size: 64 * MiB, type: 'none' }]);
    });
  });
}

test('a truncated MBR image: a partition cut short is clipped with a warning, one past the end is an error', async (t) => {
  if (skipReason()) return t.skip(skipReason()!);
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, 'mbr-cut.img'), 64 * MiB);
    await partitionImage(image, 'dos', [{ size: 16 * MiB, type: '83' }, { type: '83' }]);
    await truncate(image, 40 * MiB);
    const clipped = await tableOf(image);
    assert.equal(clipped.partitions[1]!.size, 40 * MiB - 17 * MiB);
    assert.match(clipped.warnings[0]!, /partition 2 on .* runs 25165824 bytes past the end of the device/);
    await truncate(image, 10 * MiB);
    await assert.rejects(
      tableOf(image),
      /partition 2 on .* starts at byte 17825792, beyond the 10485760-byte device/,
    );
  });
});
