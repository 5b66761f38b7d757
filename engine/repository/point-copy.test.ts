// Copying a segmented point between two local repositories: the copy has segments of its own in the target
// (written before its point file, keyed by the target's keys), restores exactly, verifies, and is not copied twice.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { copyPoint } from './point-copy.ts';
import { Repository } from './repository.ts';
import { backupImage, readWholePoint } from './testing/backup-image.ts';
import { patternedImage } from './testing/patterned-image.ts';
import { TEST_PASSWORD } from './testing/run-cli.ts';
import { verifyRepository } from './verify.ts';

const dir = await mkdtemp(join(tmpdir(), 'diskline-point-copy-'));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const make = (name: string) =>
  Repository.init(join(dir, name), {
    password: TEST_PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 256 * 1024,
  });

test("a segmented point copies with segments of the target's own, restores exactly and is copied once", async () => {
  const from = await make('from');
  const to = await make('to');
  try {
    const unit = from.chunkSize;
    const image = join(dir, 'disk.img');
    const first = patternedImage('copy-1', 40, unit);
    const second = Buffer.from(first);
    patternedImage('copy-2', 4, unit).copy(second, 8 * unit);
    const ids: string[] = [];
    // Segments of 8 units: each point names five, the second shares four with the first.
    for (const bytes of [first, second]) {
      await writeFile(image, bytes);
      ids.push((await backupImage(from, image, { limits: { unitsPerSegment: 8 } })).id);
    }
    const copies = [];
    for (const id of ids) copies.push(await copyPoint(from, to, id));
    assert.deepEqual(
      copies.map((c) => c.alreadyThere),
      [false, false],
    );
    assert.ok(
      copies[1]!.storedBytes <= 4 * unit,
      `the second copy stores what changed: ${copies[1]!.storedBytes}`,
    );
    const fromSegments = new Set(await readdir(join(dir, 'from', 'segments')));
    const toSegments = await readdir(join(dir, 'to', 'segments'));
    assert.ok(toSegments.length > 0, 'the target holds segments');
    assert.ok(
      toSegments.every((name) => !fromSegments.has(name)),
      "the target's segments are its own (chunk ids are keyed per repository)",
    );
    for (const [n, bytes] of [first, second].entries()) {
      assert.ok((await readWholePoint(to, copies[n]!.to)).equals(bytes), `copy ${n} restores exactly`);
      const copied = await to.loadManifest(copies[n]!.to);
      const original = await from.loadManifest(ids[n]!);
      assert.equal(copied.time, original.time, 'the copy keeps its time');
    }
    const verify = await verifyRepository(to, { readData: true });
    assert.ok(verify.ok, JSON.stringify(verify));
    const again = await copyPoint(from, to, ids[1]!);
    assert.deepEqual([again.to, again.alreadyThere, again.storedBytes], [copies[1]!.to, true, 0]);
  } finally {
    await from.close();
    await to.close();
  }
});
