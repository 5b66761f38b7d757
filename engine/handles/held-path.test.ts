// Held paths against a real file system: which links are followed, what a swap after the check changes (nothing),
// new files created O_EXCL|O_NOFOLLOW, and "inside" decided on descriptors.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  lchownSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { nativeHelperAvailable } from '../native/index.ts';
import {
  createInHeldDirectory,
  type HeldPathError,
  heldInside,
  holdChild,
  holdParentOf,
  holdPath,
  holdPathIfPresent,
} from './held-path.ts';

const skip = !nativeHelperAvailable() && 'native helper not built (npm run build)';
const isRoot = process.getuid?.() === 0;
const dir = mkdtempSync(join(tmpdir(), 'diskline-held-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a held file is read through its descriptor, whatever its name leads to afterwards', { skip }, () => {
  writeFileSync(join(dir, 'mine.img'), 'mine');
  writeFileSync(join(dir, 'other.img'), 'other');
  const held = holdPath(join(dir, 'mine.img'));
  try {
    renameSync(join(dir, 'mine.img'), join(dir, 'moved.img'));
    symlinkSync(join(dir, 'other.img'), join(dir, 'mine.img'));
    assert.equal(readFileSync(held.procPath, 'utf8'), 'mine');
    assert.equal(held.name, join(dir, 'mine.img'));
  } finally {
    held.close();
  }
  assert.throws(() => held.procPath, /used after its descriptor was closed/);
});

test('links are followed only when root or the trusted uid owns them', {
  skip: skip || (!isRoot && 'needs root to own links as another uid'),
}, () => {
  writeFileSync(join(dir, 'target'), 'x');
  symlinkSync(join(dir, 'target'), join(dir, 'roots-link'));
  symlinkSync(join(dir, 'target'), join(dir, 'users-link'));
  lchownSync(join(dir, 'users-link'), 64124, 64124);
  assert.ok(holdPath(join(dir, 'roots-link')).stats.isFile());
  assert.throws(
    () => holdPath(join(dir, 'users-link')),
    (error: HeldPathError) =>
      error.code === 'ELOOP' &&
      error.message ===
        `Refusing ${join(dir, 'users-link')}: users-link in it is a symbolic link owned by uid 64124; the engine follows only links of root. Name the real path.`,
  );
  assert.ok(holdPath(join(dir, 'users-link'), 64124).stats.isFile());
  // A user's link as a parent directory is refused the same way.
  symlinkSync(dir, join(dir, 'users-dir'));
  lchownSync(join(dir, 'users-dir'), 64124, 64124);
  assert.throws(
    () => holdPath(join(dir, 'users-dir', 'target')),
    /users-dir in it is a symbolic link owned by uid 64124/,
  );
});

test('a missing path is ENOENT (or null), a FIFO is held without blocking', { skip }, () => {
  assert.throws(
    () => holdPath(join(dir, 'absent', 'x')),
    (error: HeldPathError) => error.code === 'ENOENT',
  );
  assert.equal(holdPathIfPresent(join(dir, 'absent')), null);
  assert.equal(spawnSync('mkfifo', [join(dir, 'fifo')]).status, 0);
  const fifo = holdPath(join(dir, 'fifo'));
  assert.ok(fifo.stats.isFIFO());
  fifo.close();
});

test('new files are created O_EXCL|O_NOFOLLOW in a held directory: a link in their place is never followed', {
  skip,
}, () => {
  mkdirSync(join(dir, 'home'));
  const home = holdPath(join(dir, 'home'));
  try {
    const created = createInHeldDirectory(home, 'new.img', null);
    assert.equal(created.stats.mode & 0o777, 0o600);
    created.close();
    symlinkSync(join(dir, 'target'), join(dir, 'home', 'planted.img'));
    assert.throws(
      () => createInHeldDirectory(home, 'planted.img', null),
      (error: HeldPathError) => error.code === 'EEXIST',
    );
    assert.equal(readFileSync(join(dir, 'target'), 'utf8'), 'x');
    assert.throws(() => createInHeldDirectory(home, '../escape.img', null), /is not a file name/);
    assert.throws(() => holdChild(home, 'planted.img'), /is a symbolic link/);
  } finally {
    home.close();
  }
});

test('inside is decided on descriptors: a file in a directory, its parent found by inode', { skip }, () => {
  mkdirSync(join(dir, 'repo', 'points'), { recursive: true });
  writeFileSync(join(dir, 'repo', 'points', 'file'), 'y');
  const repo = holdPath(join(dir, 'repo'));
  const file = holdPath(join(dir, 'repo', 'points', 'file'));
  const parent = holdParentOf(file);
  const outside = holdPath(dir);
  try {
    assert.equal(parent.name, join(dir, 'repo', 'points'));
    assert.ok(heldInside(parent, repo));
    assert.ok(heldInside(repo, repo));
    assert.ok(!heldInside(outside, repo));
  } finally {
    for (const held of [repo, file, parent, outside]) held.close();
  }
});
