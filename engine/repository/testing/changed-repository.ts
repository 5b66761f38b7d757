// For tests of jobs whose repository is removed, moved or replaced while they run: a repository with points and
// another to take its place, the change itself, a fingerprint of a repository's files (to prove it untouched),
// the messages each change must produce, and ways to catch a job at a known step (it holds the repository open;
// it waits for the writer lock the test holds).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Manifest } from '../manifest.ts';
import { Repository } from '../repository.ts';
import { backupImage } from './backup-image.ts';
import { patternedImage, writeImage } from './patterned-image.ts';

export const OPTIONS = {
  password: 'held repository passphrase',
  scrypt: { N: 1024, r: 8, p: 1 },
  packSize: 256 * 1024,
};

/** Every file under `root` with a hash of its bytes: equal before and after means untouched. */
export function contents(root: string): Record<string, string> {
  const found: Record<string, string> = {};
  const walk = (at: string, relative: string) => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(join(at, entry.name), `${relative}${entry.name}/`);
      else
        found[`${relative}${entry.name}`] = createHash('sha256')
          .update(readFileSync(join(at, entry.name)))
          .digest('hex');
    }
  };
  walk(root, '');
  return found;
}

export type Change = 'removed' | 'moved' | 'replaced';
export const expectedMessage: Record<Change, RegExp> = {
  removed: /was removed while in use; nothing was written in its place/,
  moved:
    /was moved while in use \(the repository that was opened is now at .*moved\).*run again with its new place/,
  replaced: /was replaced by another repository while in use .*nothing was written to the one now at/,
};

export interface ChangedRepository {
  path: string;
  repo: Repository;
  image: string;
  points: Manifest[];
  /** Makes the change, synchronously (it runs inside a job's callback). */
  change(): void;
  /** After the job failed: the removed path is not recreated, the replacing repository untouched. */
  check(): Promise<void>;
}

/**
 * A repository with `pointCount` points of an image, and another repository with a point of its own; change()
 * removes the first, moves it to `<path>-moved`, or moves it there and puts the other in its place.
 */
export async function changedRepository(
  dir: string,
  name: string,
  how: Change,
  pointCount = 1,
): Promise<ChangedRepository> {
  const path = join(dir, name);
  const repo = await Repository.init(path, OPTIONS);
  const bytes = patternedImage(name, 48, 64 * 1024);
  const image = await writeImage(join(dir, `${name}.img`), bytes);
  const points: Manifest[] = [];
  for (let i = 0; i < pointCount; i++) {
    bytes.fill(i + 1, 0, 16);
    await writeImage(image, bytes);
    points.push(await backupImage(repo, image));
  }
  // The repository that takes the place of the first, with a point of its own.
  const otherPath = join(dir, `${name}-other`);
  const other = await Repository.init(otherPath, OPTIONS);
  await backupImage(
    other,
    await writeImage(join(dir, `${name}-other.img`), patternedImage('other', 8, 64 * 1024)),
  );
  await other.close();
  const otherBefore = contents(otherPath);
  let changed = false;
  return {
    path,
    repo,
    image,
    points,
    change() {
      if (changed) return;
      changed = true;
      if (how === 'removed') rmSync(path, { recursive: true });
      else renameSync(path, `${path}-moved`);
      if (how === 'replaced') renameSync(otherPath, path);
    },
    async check() {
      assert.ok(changed, 'the change was made while the job ran');
      if (how === 'removed')
        assert.equal(await stat(path).catch(() => null), null, 'the removed repository is not recreated');
      if (how === 'moved')
        assert.equal(await stat(path).catch(() => null), null, 'nothing appeared at the old name');
      if (how === 'replaced')
        assert.deepEqual(contents(path), otherBefore, 'the other repository is untouched');
    },
  };
}

/** Whether process `pid` holds the directory `path` open (as a job does from opening its repository). */
export async function holdsDirectory(pid: number, path: string): Promise<boolean> {
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === path) return true;
  }
  return false;
}

/** Waits until `condition` holds (a failure guard, not a duration the test relies on). */
export async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting until ${what}`);
    await sleep(20);
  }
}

/**
 * Holds the repository's writer lock as a live process would, so the job under test cannot commit anything
 * until the change is made; returns the release (the lock file is wherever the repository went).
 */
export async function holdWriterLock(path: string): Promise<(at: string) => Promise<void>> {
  const holder = { pid: process.pid, host: hostname(), time: new Date().toISOString(), purpose: 'the test' };
  await writeFile(join(path, 'locks', 'writer'), JSON.stringify(holder));
  return (at) => rm(join(at, 'locks', 'writer'), { force: true });
}
