// Damaged metadata never crashes a reader: bytes flipped at random in a file system's used blocks give
// either a map inside the volume or a FilesystemDamagedError naming it — never a TypeError or RangeError,
// never a hang; where the metadata is checksummed (ext4 metadata_csum, XFS v5, btrfs) a returned map is the true one. Seeded, so a failure names the seed that reproduces it.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { withTestDisk } from '../testing/disk.ts';
import type { TestFilesystem } from '../testing/filesystems.ts';
import { MiB } from '../testing/image.ts';
import { seededRandom } from '../testing/seeded-random.ts';
import { loopUnavailableReason, missingToolReason } from '../testing/tools.ts';
import { usedMapOf } from './index.ts';
import { flipBytesWithin, restoreBytes } from './testing/byte-flips.ts';
import { memoryVolume } from './testing/memory-volume.ts';
import { FilesystemDamagedError } from './types.ts';

/** Rounds per file system; DISKLINE_FUZZ_ROUNDS runs more (a soak). */
const rounds = Number(process.env.DISKLINE_FUZZ_ROUNDS) || 150;

const cases: { kind: TestFilesystem; size: number; tools: string[]; checksummed?: boolean }[] = [
  { kind: 'ext4', size: 16 * MiB, tools: ['mkfs.ext4'], checksummed: true },
  { kind: 'fat32', size: 34 * MiB, tools: ['mkfs.vfat', 'mcopy'] },
  { kind: 'ntfs', size: 8 * MiB, tools: ['mkfs.ntfs', 'ntfs-3g'] },
  { kind: 'exfat', size: 16 * MiB, tools: ['mkfs.exfat', 'mount.exfat-fuse'] },
  { kind: 'xfs', size: 64 * MiB, tools: ['mkfs.xfs'], checksummed: true },
  { kind: 'btrfs', size: 128 * MiB, tools: ['mkfs.btrfs'], checksummed: true },
];

for (const c of cases) {
  test(`${c.kind}: ${rounds} rounds of random damage to its metadata give a map or a FilesystemDamagedError`, async (t) => {
    const skip = loopUnavailableReason() ?? missingToolReason(...c.tools);
    if (skip) return t.skip(skip);
    await withTestDisk(
      {
        size: c.size,
        table: 'none',
        partitions: [{ filesystem: c.kind, fill: { files: 6, maxFileSize: 32 * 1024 } }],
      },
      async (disk) => {
        const bytes = await readFile(disk.image);
        // The bytes a reader looks at on the intact file system are its metadata: damage those.
        const reads: { start: number; length: number }[] = [];
        const intact = await usedMapOf(memoryVolume(bytes, 'intact', reads), { strict: true });
        let damagedErrors = 0;
        for (let seed = 1; seed <= rounds; seed++) {
          const next = seededRandom(seed * 7919 + c.kind.length);
          const saved = flipBytesWithin(bytes, reads, next);
          const name = `${c.kind} seed ${seed}`;
          try {
            const map = await usedMapOf(memoryVolume(bytes, name), { strict: true });
            let end = 0;
            for (const r of map.usedRanges) {
              assert.ok(r.start >= end && r.length > 0, `${name}: ranges sorted, merged, not empty`);
              end = r.start + r.length;
            }
            assert.ok(end <= bytes.length, `${name}: the map stays inside the volume`);
            if (c.checksummed && !map.allBlocks) {
              // Checksummed metadata: damage is caught, so a map that comes back is the true one.
              assert.deepEqual(map.usedRanges, intact.usedRanges, `${name}: damage went unnoticed`);
            }
          } catch (error) {
            if (!(error instanceof FilesystemDamagedError)) {
              assert.fail(`${name}: ${(error as Error).name}: ${(error as Error).message}`);
            }
            assert.ok((error as Error).message.startsWith(name), `${name}: the error names the volume`);
            damagedErrors++;
          } finally {
            restoreBytes(bytes, saved);
          }
        }
        t.diagnostic(`${damagedErrors} of ${rounds} damaged copies were refused with FilesystemDamagedError`);
      },
    );
  });
}
