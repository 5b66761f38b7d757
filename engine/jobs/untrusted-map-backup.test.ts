// The cleared-bitmap NTFS case end to end, through the real command line: 32 bytes of $Bitmap cleared leave the
// volume mounting with every file intact, but a copy of only the clusters it marks used would corrupt files. The
// map is not believed: `inspect --strict` and `backup --strict` refuse it (exit 4, nothing stored); a plain
// backup copies the volume whole with a warning that says why, the point records it, and the restore holds
// every file intact — byte for byte the damaged source. The engine daemon's backup job behaves alike.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Job } from '../../protocol/model.ts';
import { SocketClient } from '../api/client.ts';
import { Engine } from '../api/engine.ts';
import { UnixServer } from '../api/unix-server.ts';
import { StateStore } from '../config/state.ts';
import { usedMapOf } from '../filesystems/index.ts';
import { ntfsGeometry, unnamedData } from '../filesystems/ntfs.ts';
import { memoryVolume } from '../filesystems/testing/memory-volume.ts';
import { Repository } from '../repository/repository.ts';
import { runCli, TEST_PASSWORD } from '../repository/testing/run-cli.ts';
import { buildTestDisk } from '../testing/disk.ts';
import { type Checksums, readFilesystemChecksums } from '../testing/filesystems.ts';
import { MiB, withTempDir } from '../testing/image.ts';
import { withLoop } from '../testing/loop.ts';
import { loopUnavailableReason, missingToolReason } from '../testing/tools.ts';
import { defaultRunners } from './runners.ts';

const skip = loopUnavailableReason() ?? missingToolReason('mkfs.ntfs', 'ntfs-3g');

/** Clears the 32 bytes of $Bitmap that mark the most clusters used; returns how many cluster bits it cleared. */
async function clearBitmapBytes(image: Buffer): Promise<number> {
  const geo = ntfsGeometry(image.subarray(0, 512))!;
  const { runs } = await unnamedData(memoryVolume(image, 'image'), geo, 6, '$Bitmap');
  const bitmapStart = runs[0]!.lcn! * geo.clusterSize;
  const clusterCount = Math.floor((geo.totalSectors * geo.bytesPerSector) / geo.clusterSize);
  const bitmap = image.subarray(bitmapStart, bitmapStart + Math.ceil(clusterCount / 8));
  const bits = (at: number) => {
    let count = 0;
    for (let i = at; i < at + 32; i++) for (let v = bitmap[i]!; v; v &= v - 1) count++;
    return count;
  };
  let best = 0;
  for (let at = 0; at + 32 <= bitmap.length; at++) if (bits(at) > bits(best)) best = at;
  const cleared = bits(best);
  bitmap.fill(0, best, best + 32);
  return cleared;
}

const filesOf = (image: string) =>
  withLoop(image, (loop) => readFilesystemChecksums(loop.device, 'ntfs'), { readOnly: true });

/** The CLI without any engine daemon that may be running on this machine. */
const cli = (args: string[], dir: string) => runCli(args, { DISKLINE_SOCKET: join(dir, 'no-daemon.sock') });

test('NTFS with 32 bytes of $Bitmap cleared: refused under --strict, else backed up whole and restored with every file intact', {
  skip: skip ?? false,
  timeout: 300_000,
}, async () => {
  await withTempDir(async (dir) => {
    const disk = await buildTestDisk(join(dir, 'disk.img'), {
      size: 32 * MiB,
      table: 'none',
      partitions: [{ filesystem: 'ntfs', fill: { files: 12, maxFileSize: 1024 * 1024, directories: 2 } }],
    });
    const written: Checksums = disk.partitions[0]!.files;
    const image = await readFile(disk.image);
    assert.ok((await clearBitmapBytes(image)) > 64, 'the cleared bytes marked clusters used');
    await writeFile(disk.image, image);

    // The damage hides from the file system: it mounts and every file reads back intact.
    assert.deepEqual(await filesOf(disk.image), written);
    // And it is real: a copy of only the clusters $Bitmap marks does not give the files back (or does not mount).
    const believed = await usedMapOf(memoryVolume(image, 'image'), { crossCheck: false });
    const short = Buffer.alloc(image.length);
    for (const r of believed.usedRanges) image.copy(short, r.start, r.start, r.start + r.length);
    await writeFile(join(dir, 'short.img'), short);
    assert.notDeepEqual(await filesOf(join(dir, 'short.img')).catch(() => null), written);

    const inspect = await cli(['inspect', disk.image, '--strict'], dir);
    assert.equal(inspect.status, 4, inspect.stderr);
    assert.match(inspect.stderr, /\$Bitmap of the ntfs file system leaves out .* that its own records use/);

    const repo = join(dir, 'repo');
    assert.equal((await cli(['init', '--repo', repo], dir)).status, 0);
    const refused = await cli(['backup', disk.image, '--repo', repo, '--strict'], dir);
    assert.equal(refused.status, 4, refused.stderr);
    assert.match(refused.stderr, /refused \(--strict\): .*\$Bitmap .* leaves out/);
    const none = await cli(['points', '--repo', repo, '--json'], dir);
    assert.deepEqual(JSON.parse(none.stdout), []);

    const backup = await cli(['backup', disk.image, '--repo', repo], dir);
    assert.equal(backup.status, 0, backup.stderr);
    assert.match(backup.stderr, /warning: .*\$Bitmap .* leaves out .* Every block of it is copied instead/);
    const [point] = JSON.parse((await cli(['points', '--repo', repo, '--json'], dir)).stdout);
    const repository = await Repository.open(repo, { password: TEST_PASSWORD });
    try {
      const manifest = await repository.loadManifest(point.id);
      assert.equal(manifest.partitions[0]!.usedBytes, image.length, 'the point holds the volume whole');
      assert.match(manifest.partitions[0]!.copiedWholeBecause ?? '', /\$Bitmap .* leaves out/);
    } finally {
      await repository.close();
    }

    const restored = join(dir, 'restored.img');
    const restore = await cli(['restore', point.id, '--repo', repo, '--to', restored], dir);
    assert.equal(restore.status, 0, restore.stderr);
    assert.ok((await readFile(restored)).equals(image), 'the restore is the damaged source, byte for byte');
    assert.deepEqual(await filesOf(restored), written);

    // The engine daemon's backup job does the same: refused with strict, whole with the warning without.
    process.env.DISKLINE_PASSWORD = TEST_PASSWORD;
    const state = await StateStore.open(join(dir, 'state'));
    const engine = new Engine({ state, runners: defaultRunners(state) });
    await engine.start();
    const server = new UnixServer(engine, join(dir, 'engine.sock'));
    await server.listen();
    const client = await SocketClient.connect(server.path);
    try {
      const finished = (jobId: string) =>
        new Promise<Job>((resolve) =>
          client.on('job.updated', (job) => {
            if (job.id === jobId && ['succeeded', 'failed'].includes(job.state)) resolve(job);
          }),
        );
      const strictJob = await client.call('backup.start', { source: disk.image, repo, strict: true });
      const strictEnd = await finished(strictJob.id);
      assert.equal(strictEnd.state, 'failed');
      assert.match(strictEnd.error ?? '', /\$Bitmap of the ntfs file system leaves out/);
      const plainJob = await client.call('backup.start', { source: disk.image, repo });
      const plainEnd = await finished(plainJob.id);
      assert.equal(plainEnd.state, 'succeeded', plainEnd.error ?? '');
      const warnings = (plainEnd.result?.warnings ?? []) as string[];
      assert.ok(
        warnings.some((w) => /\$Bitmap .* leaves out .* Every block of it is copied instead/.test(w)),
      );
    } finally {
      await client.close();
      await server.close();
      await engine.stop();
    }
  });
});
