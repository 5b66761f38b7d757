// Restore's decoding paths: on the main thread and on worker threads give the same bytes, and a damaged chunk
// fails naming its pack on either path. (The command-line tests restore with the default for this machine.)
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openWriter } from '../device/open.ts';
import { DamagedRepositoryError } from './errors.ts';
import { packFileName } from './pack.ts';
import { Repository } from './repository.ts';
import { restorePoint } from './restore.ts';
import { backupImage } from './testing/backup-image.ts';
import { patternedImage, writeImage } from './testing/patterned-image.ts';
import { chunkIdsOf } from './testing/point-chunks.ts';
import { TEST_PASSWORD } from './testing/run-cli.ts';

const dir = await mkdtemp(join(tmpdir(), 'diskline-restore-'));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function backedUp(name: string) {
  const repo = await Repository.init(join(dir, name), {
    password: TEST_PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 1 << 20,
  });
  // 300 units: several packs and several spans, plus a tail shorter than a unit.
  const image = patternedImage(name, 300, repo.chunkSize, 4321);
  const manifest = await backupImage(repo, await writeImage(join(dir, `${name}.img`), image));
  return { repo, image, manifest };
}

async function restoreTo(
  repo: Repository,
  manifest: Awaited<ReturnType<typeof backupImage>>,
  path: string,
  threads: number,
) {
  const writer = await openWriter(path, { minSize: manifest.source.size });
  try {
    return await restorePoint(repo, manifest, writer, { targetIsZeroed: true, decodeThreads: threads });
  } finally {
    await writer.close();
  }
}

test('a point restores byte for byte whether decoded on the main thread or on workers', async () => {
  const { repo, image, manifest } = await backedUp('paths');
  try {
    for (const threads of [0, 2]) {
      const path = join(dir, `paths-${threads}.img`);
      const result = await restoreTo(repo, manifest, path, threads);
      assert.ok((await readFile(path)).equals(image), `restored with ${threads} decode threads`);
      assert.equal(result.usedBytes, image.length);
    }
  } finally {
    await repo.close();
  }
});

test('a flipped byte in a pack fails the restore naming the pack, on either path', async () => {
  const { repo, manifest } = await backedUp('flipped');
  try {
    const index = await repo.loadIndex();
    const entry = index.get((await chunkIdsOf(repo, manifest))[10]!)!;
    const file = await open(join(repo.backend.location, packFileName(entry.pack)), 'r+');
    try {
      const byte = Buffer.alloc(1);
      // A byte inside the group's sealed bytes (its last 16 are the tag).
      const at = entry.blobOffset + entry.blobLength - 40;
      await file.read(byte, 0, 1, at);
      byte[0]! ^= 0xff;
      await file.write(byte, 0, 1, at);
    } finally {
      await file.close();
    }
    for (const threads of [0, 2]) {
      await assert.rejects(
        restoreTo(repo, manifest, join(dir, `flipped-${threads}.img`), threads),
        (error) => {
          assert.ok(error instanceof DamagedRepositoryError);
          assert.match(
            error.message,
            new RegExp(`^pack ${entry.pack}: chunk [0-9a-f]{16}: fails authentication`),
          );
          return true;
        },
      );
    }
  } finally {
    await repo.close();
  }
});

test('onlyRanges restores just the units touching the ranges; the rest of a zeroed target stays zero', async () => {
  const { repo, image, manifest } = await backedUp('ranges');
  try {
    const unit = repo.chunkSize;
    // Unsorted: one from inside unit 299 to the end (the short unit 300), one inside a unit, one across a unit
    // boundary, one empty.
    const ranges = [
      { start: 299 * unit + 5, end: image.length },
      { start: 10 * unit + 100, end: 10 * unit + 200 },
      { start: 40 * unit - 1, end: 41 * unit + 1 },
      { start: 90 * unit, end: 90 * unit },
    ];
    const wanted = new Set([10, 39, 40, 41, 299, 300]);
    const path = join(dir, 'ranges-restored.img');
    const writer = await openWriter(path, { minSize: manifest.source.size });
    let result: Awaited<ReturnType<typeof restorePoint>>;
    try {
      result = await restorePoint(repo, manifest, writer, { targetIsZeroed: true, onlyRanges: ranges });
    } finally {
      await writer.close();
    }
    const restored = await readFile(path);
    const expected = Buffer.alloc(image.length);
    for (const u of wanted) image.copy(expected, u * unit, u * unit, Math.min(image.length, (u + 1) * unit));
    const differing: number[] = [];
    for (let u = 0; u * unit < image.length; u++) {
      const end = Math.min(image.length, (u + 1) * unit);
      if (!restored.subarray(u * unit, end).equals(expected.subarray(u * unit, end))) differing.push(u);
    }
    assert.deepEqual(differing, [], 'only the touched units were written');
    assert.equal(
      result.usedBytes,
      4 * unit + (image.length - 299 * unit),
      'usedBytes counts the touched units',
    );
  } finally {
    await repo.close();
  }
});
