// The local cache of a remote repository's index files and manifests: a warm `points` and restore plan cost
// one listing per folder, not one request per file; deleting the cache changes nothing but the request count;
// a damaged or swapped cached copy is never believed over the store.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Repository } from '../../repository/repository.ts';
import { TEST_PASSWORD } from '../../repository/testing/run-cli.ts';
import { s3CliSuite } from '../../repository/testing/s3-cli-suite.ts';
import { s3StoreUnavailableReason } from '../../testing/s3-store.ts';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

const unavailable = s3StoreUnavailableReason();
describe('the local cache of an S3 repository', { skip: unavailable ?? false }, () => {
  const suite = s3CliSuite('diskline-s3-cache-');
  const { ok } = suite;
  /** The CLI's output and the requests the store answered while it ran. */
  const counted = async (args: string[]) => {
    const before = await suite.store.requestsServed();
    const run = await ok(args);
    return { stdout: run.stdout, requests: (await suite.store.requestsServed()) - before };
  };

  test('points and restore read no index file or manifest from the store when warm; a cache deleted or damaged changes only the count', async () => {
    const { store, dir, env } = suite;
    const repo = store.location('cached', 'repo');
    await ok(['init', '--repo', repo]);
    const image = join(dir, 'disk.img');
    const versions: Buffer[] = [];
    for (let i = 0; i < 5; i++) {
      const bytes = randomBytes(4 << 20);
      await writeFile(image, bytes);
      versions.push(bytes);
      await ok(['backup', image, '--repo', repo]);
    }
    const cacheRoot = join(dir, 'state', 'cache');
    await rm(cacheRoot, { recursive: true, force: true }); // the backups filled it
    const cold = await counted(['points', '--repo', repo, '--json']);
    const warm = await counted(['points', '--repo', repo, '--json']);
    process.stdout.write(`# points of 5: ${cold.requests} requests cold, ${warm.requests} warm\n`);
    assert.equal(warm.stdout, cold.stdout, 'the same points, warm or cold');
    assert.equal(JSON.parse(warm.stdout).length, 5);
    // Cold: the config, the listing, and the five manifests; warm: the config and the listing.
    assert.ok(cold.requests >= 7, `cold points sent ${cold.requests} requests`);
    assert.ok(
      warm.requests <= 2,
      `warm points sent ${warm.requests} requests, more than the config and a listing`,
    );

    // In process: a restore plan (manifests and index) is served from the cache once one open has read it.
    for (const [name, value] of Object.entries(env)) process.env[name] = value;
    for (const round of ['warming', 'warm']) {
      const opened = await Repository.open(repo, { password: TEST_PASSWORD });
      try {
        const backend = opened.backend as unknown as { hits: number; misses: number };
        await opened.listPoints();
        await opened.loadIndex(true);
        if (round === 'warm') {
          assert.equal(backend.misses, 0, 'every manifest and index file came from the cache');
          assert.ok(backend.hits >= 5 + 5, `${backend.hits} reads from the cache`);
        }
      } finally {
        await opened.close();
      }
    }

    // Every cached copy damaged: never believed; the same points and bytes come back, and the cache mends.
    const [repoId] = await readdir(cacheRoot);
    for (const folder of ['points', 'index']) {
      for (const file of await readdir(join(cacheRoot, repoId!, folder))) {
        const path = join(cacheRoot, repoId!, folder, file);
        const bytes = await readFile(path);
        bytes[bytes.length >> 1]! ^= 0x40;
        await writeFile(path, bytes);
      }
    }
    const mended = await counted(['points', '--repo', repo, '--json']);
    assert.equal(mended.stdout, cold.stdout, 'damaged copies are read again from the store');
    const restored = join(dir, 'restored.img');
    await ok(['restore', 'latest', '--repo', repo, '--to', restored]);
    assert.equal(sha256(await readFile(restored)), sha256(versions.at(-1)!));
    assert.ok(
      (await counted(['points', '--repo', repo, '--json'])).requests <= 2,
      'the cache is whole again',
    );

    // Deleted: the same answers, at the cold cost.
    await rm(cacheRoot, { recursive: true, force: true });
    const again = await counted(['points', '--repo', repo, '--json']);
    assert.equal(again.stdout, cold.stdout);
    assert.equal(again.requests, cold.requests);
  });
});
