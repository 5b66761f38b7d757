// The connection test of the "add an S3 repository" form, against a real radosgw: each answer it can give.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type S3Store, s3StoreUnavailableReason, startS3Store } from '../../testing/s3-store.ts';
import { S3Backend } from './backend.ts';
import { checkS3Connection } from './connection-check.ts';

const unavailable = s3StoreUnavailableReason();
describe('the S3 connection check', { skip: unavailable ?? false }, () => {
  let store: S3Store;
  before(async () => {
    store = await startS3Store();
  });
  after(async () => {
    await store?.stop();
  });

  test('a bucket not made yet, a repository, foreign objects, Object Lock, wrong keys and no store at all', async () => {
    const fresh = await checkS3Connection(store.location('not-made-yet'), store.credentials);
    assert.deepEqual(
      [fresh.ok, fresh.reachable, fresh.authorized, fresh.bucketExists],
      [true, true, true, false],
    );

    const repo = new S3Backend(store.location('checked', 'repo'), { credentials: store.credentials });
    await repo.ensureBucket();
    await repo.put('config', Buffer.from('{}'));
    await repo.put('index/x', Buffer.from('x'));
    const found = await checkS3Connection(store.location('checked', 'repo'), store.credentials);
    assert.deepEqual([found.ok, found.repositoryFound, found.objectLock.enabled], [true, true, false]);

    const other = new S3Backend(store.location('checked', 'photos'), { credentials: store.credentials });
    await other.put('holiday.jpg', Buffer.from('jpeg'));
    const foreign = await checkS3Connection(store.location('checked', 'photos'), store.credentials);
    assert.equal(foreign.ok, false);
    assert.match(foreign.problem ?? '', /not a Diskline repository/);

    const { client } = new S3Backend(store.location('locked-check'), { credentials: store.credentials });
    await client.expect(
      { method: 'PUT', key: '', headers: { 'x-amz-bucket-object-lock-enabled': 'true' } },
      [200],
    );
    const rule = Buffer.from(
      '<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled>' +
        '<Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>7</Days></DefaultRetention></Rule></ObjectLockConfiguration>',
    );
    const md5 = createHash('md5').update(rule).digest('base64');
    await client.expect(
      { method: 'PUT', key: '', query: { 'object-lock': '' }, body: rule, headers: { 'content-md5': md5 } },
      [200],
    );
    const locked = await checkS3Connection(store.location('locked-check'), store.credentials);
    assert.deepEqual(locked.objectLock, { enabled: true, mode: 'COMPLIANCE', days: 7 });

    const refused = await checkS3Connection(store.location('checked', 'repo'), {
      accessKeyId: store.credentials.accessKeyId,
      secretAccessKey: 'not the secret',
    });
    assert.deepEqual([refused.ok, refused.reachable, refused.authorized], [false, true, false]);
    assert.match(refused.problem ?? '', /refused these keys/);
    assert.doesNotMatch(JSON.stringify(refused), /not the secret/, 'no secret in the report');

    // A port nothing listens on (taken and released).
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    const down = await checkS3Connection(`s3:http://127.0.0.1:${port}/bucket/repo`, store.credentials);
    assert.deepEqual([down.ok, down.reachable], [false, false]);
    assert.match(down.problem ?? '', /does not answer/);
  });
});
