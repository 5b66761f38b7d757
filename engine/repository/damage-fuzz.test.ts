// Seeded damage fuzz over whole repositories: files swapped, copied over each other, renamed, flipped, cut,
// deleted, or replaced by a FIFO or a link to /dev/zero, a few at a time. Whatever was done, every point either
// restores to exactly its own disk or fails as damage (exit code 4) — never another point's bytes, never a raw
// error, never a hang — and verify --read-data calls no such repository sound. Rerun one seed with
// DISKLINE_SEED=N; soak with DISKLINE_SEEDS=N.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  copyFile,
  cp,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { openWriter } from '../device/open.ts';
import { seededRandom } from '../testing/seeded-random.ts';
import { RepositoryError } from './errors.ts';
import { Repository } from './repository.ts';
import { restorePoint } from './restore.ts';
import { backupImage } from './testing/backup-image.ts';
import { changeUnits, patternedImage, writeImage } from './testing/patterned-image.ts';
import { TEST_PASSWORD } from './testing/run-cli.ts';
import { verifyRepository } from './verify.ts';

const UNITS = 32;
const DEFAULT_SEEDS = 12;
let dir: string;
/** The undamaged repositories, encrypted and not (where the HMACs are all the checks there are). */
const pristine = { encrypted: '', unencrypted: '' };
/** Each point's disk, by point id. */
const disks = new Map<string, Buffer>();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-damage-fuzz-'));
  for (const kind of ['encrypted', 'unencrypted'] as const) {
    pristine[kind] = join(dir, `pristine-${kind}`);
    await backUpThreeDisks(
      await Repository.init(pristine[kind], {
        password: TEST_PASSWORD,
        insecureNoEncryption: kind === 'unencrypted',
        scrypt: { N: 1024, r: 8, p: 1 },
        packSize: 256 * 1024,
      }),
    );
  }
});

/** Points of two disks and a later point of the first, each point's disk kept by its id. */
async function backUpThreeDisks(repo: Repository): Promise<void> {
  const unit = repo.chunkSize;
  const a = patternedImage('fuzz A', UNITS, unit);
  const b = patternedImage('fuzz B', UNITS, unit);
  // A later point of A's disk: shares most chunks with A, so files moved between them could pass for each other.
  const a2 = Buffer.from(a);
  changeUnits(a2, unit, [3, 17, 30], 'fuzz A2');
  for (const [name, image] of [
    ['a', a],
    ['b', b],
    ['a2', a2],
  ] as const) {
    const manifest = await backupImage(repo, await writeImage(join(dir, `${name}.img`), image));
    disks.set(manifest.id, image);
  }
  await repo.close();
}

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The repository's regular files under points/, index/ and packs/. */
async function filesOf(root: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (at: string): Promise<void> => {
    for (const entry of await readdir(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) await walk(path);
      // Only regular files are damaged further: reading a FIFO made by an earlier step would block the test.
      else if (entry.isFile()) files.push(relative(root, path));
    }
  };
  for (const folder of ['points', 'index', 'packs']) await walk(join(root, folder));
  return files.sort();
}

const hex = (next: () => number) =>
  Array.from({ length: 32 }, () => Math.floor(next() * 16).toString(16)).join('');

/** Does one random thing to one or two of the repository's files; returns what, for the failure message. */
async function damage(root: string, next: () => number): Promise<string> {
  const files = await filesOf(root);
  // A folder first, so the few manifests are picked as often as the many packs; the second file mostly from the
  // same folder, where a moved file has the best chance to pass for the one it replaces.
  const inFolder = (folder: string) => files.filter((name) => name.startsWith(folder));
  const pickFrom = (list: string[]) => list[Math.floor(next() * list.length)]!;
  const folders = ['points/', 'index/', 'packs/'].filter((folder) => inFolder(folder).length > 0);
  const a = pickFrom(inFolder(pickFrom(folders)));
  const b = next() < 0.7 ? pickFrom(inFolder(a.slice(0, a.indexOf('/') + 1))) : pickFrom(files);
  const at = (name: string) => join(root, name);
  switch (Math.floor(next() * 8)) {
    case 0:
      if (a === b) return `nothing (${a} with itself)`;
      await rename(at(a), at(`${a}.swapping`));
      await rename(at(b), at(a));
      await rename(at(`${a}.swapping`), at(b));
      return `swapped ${a} and ${b}`;
    case 1:
      if (a === b) return `nothing (${a} over itself)`;
      await copyFile(at(a), at(b));
      return `copied ${a} over ${b}`;
    case 2: {
      const to = a.startsWith('packs/')
        ? `packs/${a.slice(6, 8)}/${hex(next)}`
        : `${a.split('/')[0]}/${hex(next)}`;
      await rename(at(a), at(to));
      return `renamed ${a} to ${to}`;
    }
    case 3: {
      const bytes = await readFile(at(a));
      const where = Math.floor(next() * bytes.length);
      bytes[where]! ^= 1 << Math.floor(next() * 8);
      await writeFile(at(a), bytes);
      return `flipped a bit at ${where} of ${a}`;
    }
    case 4: {
      const bytes = await readFile(at(a));
      const length = Math.floor(next() * bytes.length);
      await truncate(at(a), length);
      return `cut ${a} to ${length} bytes`;
    }
    case 5:
      await rm(at(a));
      return `deleted ${a}`;
    case 6:
      await rm(at(a));
      execFileSync('mkfifo', [at(a)]);
      return `made ${a} a FIFO`;
    default:
      await rm(at(a));
      await symlink('/dev/zero', at(a));
      return `made ${a} a link to /dev/zero`;
  }
}

/** A failure must be damage, said as such (the CLI's exit code 4). */
function assertDamage(error: unknown, context: string): void {
  if (error instanceof RepositoryError && error.kind === 'damage') return;
  throw new Error(`${context}: failed with something other than damage: ${(error as Error).stack}`);
}

async function runSeed(seed: number, kind: keyof typeof pristine): Promise<void> {
  const next = seededRandom(seed);
  const root = join(dir, `seed-${seed}-${kind}`);
  await cp(pristine[kind], root, { recursive: true });
  const done: string[] = [];
  const steps = 1 + Math.floor(next() * 3);
  for (let step = 0; step < steps; step++) done.push(await damage(root, next));
  const context = `seed ${seed} (rerun with DISKLINE_SEED=${seed}), ${kind}, after ${done.join('; ')}`;
  let repo: Repository;
  try {
    repo = await Repository.open(root, { password: TEST_PASSWORD });
  } catch (error) {
    assertDamage(error, context);
    return;
  }
  try {
    let failed = 0;
    for (const id of await repo.pointIds()) {
      const target = join(root, `restored-${id}.img`);
      try {
        const manifest = await repo.loadManifest(id);
        const disk = disks.get(id);
        assert.ok(disk, `${context}: point ${id} opened, but no backup made it`);
        const writer = await openWriter(target, { minSize: manifest.source.size });
        try {
          await restorePoint(repo, manifest, writer, { targetIsZeroed: true, decodeThreads: 0 });
        } finally {
          await writer.close();
        }
        assert.ok(
          (await readFile(target)).equals(disk),
          `${context}: point ${id} restored other bytes than its disk`,
        );
      } catch (error) {
        if (error instanceof assert.AssertionError) throw error;
        assertDamage(error, `${context}: point ${id}`);
        failed += 1;
      } finally {
        await rm(target, { force: true });
      }
    }
    if (failed > 0) {
      // Verify may stop at damage it cannot read past (exit 4 too); it must not call the repository sound.
      const sound = await verifyRepository(repo, { readData: true }).then(
        (report) => report.ok,
        (error: unknown) => {
          assertDamage(error, `${context}: verify`);
          return false;
        },
      );
      assert.equal(sound, false, `${context}: verify --read-data called it sound`);
    }
  } finally {
    await repo.close();
    await rm(root, { recursive: true, force: true });
  }
}

test('no damage to a repository restores a point as other bytes, or fails as anything but damage', {
  timeout: 600_000,
}, async () => {
  const only = process.env.DISKLINE_SEED;
  const seeds = only
    ? [Number(only)]
    : Array.from({ length: Number(process.env.DISKLINE_SEEDS) || DEFAULT_SEEDS }, (_, i) => i + 1);
  for (const seed of seeds)
    for (const kind of ['encrypted', 'unencrypted'] as const) await runSeed(seed, kind);
});
