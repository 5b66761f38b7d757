// A repository in an Object Lock bucket (default retention, governance mode): a point under retention cannot be
// pruned, prune says until when, and the repository stays consistent — every point restores exactly and verify
// passes. The store itself refuses to destroy the retained bytes.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { s3CliSuite } from '../../repository/testing/s3-cli-suite.ts';
import { type S3Store, s3StoreUnavailableReason } from '../../testing/s3-store.ts';
import { S3Backend } from './backend.ts';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Makes a bucket with Object Lock and a default retention of one day in governance mode. */
async function lockedBucket(store: S3Store, bucket: string): Promise<void> {
  const { client } = new S3Backend(store.location(bucket), { credentials: store.credentials });
  await client.expect(
    { method: 'PUT', key: '', headers: { 'x-amz-bucket-object-lock-enabled': 'true' } },
    [200],
  );
  const rule = Buffer.from(
    '<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled>' +
      '<Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>',
  );
  await client.expect(
    {
      method: 'PUT',
      key: '',
      query: { 'object-lock': '' },
      body: rule,
      headers: { 'content-md5': createHash('md5').update(rule).digest('base64') },
    },
    [200],
  );
}

const unavailable = s3StoreUnavailableReason();
describe('a repository in an Object Lock bucket', { skip: unavailable ?? false }, () => {
  const suite = s3CliSuite('diskline-s3-lock-');
  const { ok } = suite;

  test('a point under retention is not pruned, prune says until when, and every point restores and verifies', async () => {
    const { store, dir } = suite;
    await lockedBucket(store, 'immutable');
    const repo = store.location('immutable', 'repo');
    await ok(['init', '--repo', repo]);
    const image = join(dir, 'disk.img');
    const hashes = new Map<string, string>();
    for (let i = 0; i < 2; i++) {
      const bytes = randomBytes(4 << 20);
      await writeFile(image, bytes);
      const run = await ok(['backup', image, '--repo', repo, '--json']);
      hashes.set(JSON.parse(run.stdout).point.id, sha256(bytes));
    }
    const [older, newer] = [...hashes.keys()];

    const report = JSON.parse((await ok(['prune', '--repo', repo, '--keep-last', '1', '--json'])).stdout);
    assert.deepEqual(report.forgotten, [], 'nothing under retention is forgotten');
    assert.deepEqual(
      report.retained.map((r: { id: string }) => r.id),
      [older],
    );
    const until = Date.parse(report.retained[0].until);
    assert.ok(
      until > Date.now() + 23 * 3600_000,
      `retained for the bucket's day: ${report.retained[0].until}`,
    );
    const text = await ok(['prune', '--repo', repo, '--keep-last', '1']);
    assert.match(text.stdout, new RegExp(`Cannot forget point ${older} yet: the store retains it until`));

    // Consistent: both points listed, restored byte for byte, verified.
    const points = JSON.parse((await ok(['points', '--repo', repo, '--json'])).stdout) as { id: string }[];
    assert.deepEqual(points.map((p) => p.id).sort(), [older, newer].sort());
    for (const [id, hash] of hashes) {
      const to = join(dir, `${id}.img`);
      await ok(['restore', id, '--repo', repo, '--to', to]);
      assert.equal(sha256(await readFile(to)), hash, `point ${id} restores exactly`);
    }
    await ok(['verify', '--repo', repo, '--read-data']);

    // The lock is the store's, not a courtesy of Diskline: destroying the manifest's bytes is refused.
    const { client } = new S3Backend(repo, { credentials: store.credentials });
    const head = await client.expect({ method: 'HEAD', key: `repo/points/${older}` }, [200]);
    const versionId = head.headers.get('x-amz-version-id') ?? '';
    assert.ok(versionId, 'the bucket keeps versions');
    const destroy = await client.send({
      method: 'DELETE',
      key: `repo/points/${older}`,
      query: { versionId },
    });
    assert.equal(destroy.status, 403, 'the store refuses to destroy a retained version');
  });
});
