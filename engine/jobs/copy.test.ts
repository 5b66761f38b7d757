// diskline copy: points of a local repository mirrored into an S3 one (a real radosgw) restore byte for byte
// there, keep their time and source, store only what the target lacks, and are not copied twice.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { s3CliSuite } from '../repository/testing/s3-cli-suite.ts';
import { s3StoreUnavailableReason } from '../testing/s3-store.ts';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const MiB = 1 << 20;

const unavailable = s3StoreUnavailableReason();
describe('diskline copy from a local repository to S3', { skip: unavailable ?? false }, () => {
  const suite = s3CliSuite('diskline-copy-', {
    DISKLINE_TO_PASSWORD: 'another passphrase for the target',
  });
  const { ok } = suite;

  test('copied points restore exactly from the target, keep their time, store only what it lacks, and copy once', async () => {
    const { store, dir, env } = suite;
    const local = join(dir, 'local');
    const remote = store.location('offsite', 'mirror');
    await ok(['init', '--repo', local]);
    await ok(['init', '--repo', remote], { DISKLINE_PASSWORD: env.DISKLINE_TO_PASSWORD! });
    const image = join(dir, 'disk.img');
    const first = randomBytes(16 * MiB);
    const second = Buffer.from(first);
    randomBytes(MiB).copy(second, 3 * MiB); // 1 MiB of 16 changed
    const hashes: string[] = [];
    const ids: string[] = [];
    for (const bytes of [first, second]) {
      await writeFile(image, bytes);
      ids.push(JSON.parse((await ok(['backup', image, '--repo', local, '--json'])).stdout).point.id);
      hashes.push(sha256(bytes));
    }

    const copy = JSON.parse(
      (await ok(['copy', ids[0]!, ids[1]!, '--from', local, '--to', remote, '--json'])).stdout,
    ).copied as { from: string; to: string; alreadyThere: boolean; storedBytes: number }[];
    assert.deepEqual(
      copy.map((c) => [c.from, c.alreadyThere]),
      [
        [ids[0], false],
        [ids[1], false],
      ],
    );
    assert.ok(copy[0]!.storedBytes >= 16 * MiB, 'the first copy stores the disk');
    assert.ok(copy[1]!.storedBytes < 2 * MiB, `the second stores only what changed: ${copy[1]!.storedBytes}`);

    const target = { DISKLINE_PASSWORD: env.DISKLINE_TO_PASSWORD! };
    const localPoints = JSON.parse((await ok(['points', '--repo', local, '--json'])).stdout);
    const remotePoints = JSON.parse((await ok(['points', '--repo', remote, '--json'], target)).stdout);
    assert.deepEqual(
      remotePoints.map((p: { time: string; source: string }) => [p.time, p.source]),
      localPoints.map((p: { time: string; source: string }) => [p.time, p.source]),
      'the same times and sources',
    );
    for (const [n, point] of copy.entries()) {
      const to = join(dir, `restored-${n}.img`);
      await ok(['restore', point.to, '--repo', remote, '--to', to], target);
      assert.equal(sha256(await readFile(to)), hashes[n], `copy of ${point.from} restores exactly`);
    }
    await ok(['verify', '--repo', remote, '--read-data'], target);

    const again = JSON.parse((await ok(['copy', 'latest', '--from', local, '--to', remote, '--json'])).stdout)
      .copied as { to: string; alreadyThere: boolean; storedBytes: number }[];
    assert.deepEqual(
      again.map((c) => [c.to, c.alreadyThere, c.storedBytes]),
      [[copy[1]!.to, true, 0]],
      'a point copied before is not copied again',
    );
  });
});
