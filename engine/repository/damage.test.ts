// Bad input, each met with a specific error and nothing changed: damaged, truncated or missing packs and
// manifests, a wrong passphrase, a newer format, and restore targets that are too small, mounted, attached
// or a device without --yes.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { checkFilesystem, makeFilesystem, withMount } from '../testing/filesystems.ts';
import { attachLoop } from '../testing/loop.ts';
import { loopUnavailableReason } from '../testing/tools.ts';
import { packFileName } from './pack.ts';
import { Repository } from './repository.ts';
import { backupImage } from './testing/backup-image.ts';
import { patternedImage, writeImage } from './testing/patterned-image.ts';
import { runCli, TEST_PASSWORD } from './testing/run-cli.ts';

const UNIT = 64 * 1024;
let dir: string;
let pristine: string;
let imageA: Buffer;
let imageB: Buffer;
let pointA: string;
let pointB: string;
let packsOfA: string[];

async function treeHash(root: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (at: string): Promise<void> => {
    for (const entry of (await readdir(at, { withFileTypes: true })).sort((a, b) =>
      a.name.localeCompare(b.name),
    )) {
      const path = join(at, entry.name);
      hash.update(path.slice(root.length));
      if (entry.isDirectory()) await walk(path);
      else hash.update(await readFile(path));
    }
  };
  await walk(root);
  return hash.digest('hex');
}

const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** A private copy of the two-point repository for one test. */
async function copyRepo(name: string): Promise<string> {
  const target = join(dir, name);
  await cp(pristine, target, { recursive: true });
  return target;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-damage-'));
  pristine = join(dir, 'pristine');
  const repo = await Repository.init(pristine, {
    password: TEST_PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 512 * 1024,
  });
  imageA = patternedImage('A', 48, UNIT);
  imageB = patternedImage('B', 48, UNIT);
  const a = await backupImage(repo, await writeImage(join(dir, 'a.img'), imageA));
  const b = await backupImage(repo, await writeImage(join(dir, 'b.img'), imageB));
  pointA = a.id;
  pointB = b.id;
  // Packs holding chunks of A but none of B (the two images share only zero units).
  const index = await repo.loadIndex(true);
  const packs = (m: typeof a) => new Set(m.chunkIds.map((id) => index.get(id)!.pack));
  const ofB = packs(b);
  packsOfA = [...packs(a)].filter((p) => !ofB.has(p));
  assert.ok(packsOfA.length > 0);
  await repo.close();
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a flipped byte in a pack: verify --read-data names the damaged point only; restore of it fails naming the pack', async () => {
  const repo = await copyRepo('flipped');
  const packPath = join(repo, packFileName(packsOfA[0]!));
  const pack = await readFile(packPath);
  // Inside the first group's stored bytes: after the pack header (24), the group header (16) and its members.
  const members = pack.readUInt32LE(24 + 4);
  pack[24 + 16 + 36 * members + 100]! ^= 0x40;
  await writeFile(packPath, pack);
  const structural = await runCli(['verify', '--repo', repo]);
  assert.equal(structural.status, 0, 'the structure is intact');
  const verify = await runCli(['verify', '--repo', repo, '--read-data']);
  assert.equal(verify.status, 4);
  assert.match(verify.stdout, new RegExp(`DAMAGED point ${pointA}`));
  assert.doesNotMatch(verify.stdout, new RegExp(pointB));
  assert.match(verify.stdout, /fails authentication/);
  const restore = await runCli(['restore', pointA, '--repo', repo, '--to', join(dir, 'flipped-out.img')]);
  assert.equal(restore.status, 4);
  assert.match(restore.stderr, new RegExp(`pack ${packsOfA[0]}: chunk [0-9a-f]+: fails authentication`));
  const good = await runCli(['restore', pointB, '--repo', repo, '--to', join(dir, 'b-out.img')]);
  assert.equal(good.status, 0, good.stderr);
  assert.equal(sha(await readFile(join(dir, 'b-out.img'))), sha(imageB));
});

for (const kind of ['truncated', 'missing'] as const) {
  test(`a ${kind} pack: verify names the point, and restore refuses before touching the target`, async () => {
    const repo = await copyRepo(`${kind}-pack`);
    const packPath = join(repo, packFileName(packsOfA[0]!));
    if (kind === 'truncated') await truncate(packPath, (await stat(packPath)).size - 5000);
    else await rm(packPath);
    const verify = await runCli(['verify', '--repo', repo]);
    assert.equal(verify.status, 4);
    assert.match(verify.stdout, new RegExp(`DAMAGED point ${pointA}`));
    assert.match(
      verify.stdout,
      new RegExp(
        `pack ${packsOfA[0]} ${kind === 'missing' ? 'is missing' : 'is (damaged: truncated|truncated)'}`,
      ),
    );
    const target = join(dir, `${kind}-target.img`);
    await writeFile(target, Buffer.alloc(UNIT * 48, 7));
    const before = sha(await readFile(target));
    const restore = await runCli(['restore', pointA, '--repo', repo, '--to', target]);
    assert.equal(restore.status, 4);
    assert.match(
      restore.stderr,
      new RegExp(`restore point ${pointA} is damaged: pack ${packsOfA[0]} is ${kind}.*nothing was written`),
    );
    assert.equal(sha(await readFile(target)), before, 'the target is unchanged');
  });
}

test('a truncated manifest: verify and points name the point; restore says the manifest is damaged', async () => {
  const repo = await copyRepo('bad-manifest');
  const manifest = join(repo, 'points', pointA);
  await truncate(manifest, (await stat(manifest)).size - 10);
  const verify = await runCli(['verify', '--repo', repo]);
  assert.equal(verify.status, 4);
  assert.match(
    verify.stdout,
    new RegExp(`DAMAGED point ${pointA}:\\n  - manifest of point ${pointA} is damaged`),
  );
  const points = await runCli(['points', '--repo', repo, '--json']);
  assert.equal(points.status, 4);
  assert.match(points.stderr, new RegExp(`point ${pointA} cannot be read`));
  assert.deepEqual(
    JSON.parse(points.stdout).map((p: { id: string }) => p.id),
    [pointB],
  );
  const restore = await runCli(['restore', pointA, '--repo', repo, '--to', join(dir, 'never.img')]);
  assert.equal(restore.status, 4);
  assert.match(restore.stderr, /manifest of point [0-9a-f]+ is damaged: it fails authentication/);
  await assert.rejects(stat(join(dir, 'never.img')), /ENOENT/);
});

test('a missing manifest: the point is gone from the list and restoring it says there is no such point', async () => {
  const repo = await copyRepo('no-manifest');
  await rm(join(repo, 'points', pointA));
  const restore = await runCli(['restore', pointA, '--repo', repo, '--to', join(dir, 'never2.img')]);
  assert.equal(restore.status, 1);
  assert.match(restore.stderr, new RegExp(`no restore point '${pointA}' in repository`));
  const verify = await runCli(['verify', '--repo', repo]);
  assert.equal(verify.status, 0, 'the remaining point is sound');
});

test('a wrong passphrase is refused by name and changes nothing', async () => {
  const repo = await copyRepo('wrong-pass');
  const before = await treeHash(repo);
  const run = await runCli(['points', '--repo', repo], { DISKLINE_PASSWORD: 'not it' });
  assert.equal(run.status, 1);
  assert.match(run.stderr, /wrong passphrase for repository/);
  const backup = await runCli(['backup', join(dir, 'a.img'), '--repo', repo], {
    DISKLINE_PASSWORD: 'not it',
  });
  assert.equal(backup.status, 1);
  assert.equal(await treeHash(repo), before);
  const passFile = join(dir, 'pass.txt');
  await writeFile(passFile, `${TEST_PASSWORD}\n`);
  const withFile = await runCli(['points', '--repo', repo, '--password-file', passFile], {
    DISKLINE_PASSWORD: undefined,
  });
  assert.equal(withFile.status, 0, withFile.stderr);
});

test('a repository of a newer format is refused with the versions named', async () => {
  const repo = await copyRepo('newer');
  const config = JSON.parse(await readFile(join(repo, 'config'), 'utf8'));
  await writeFile(join(repo, 'config'), JSON.stringify({ ...config, format: config.format + 1 }));
  const before = await treeHash(repo);
  const run = await runCli(['backup', join(dir, 'a.img'), '--repo', repo]);
  assert.equal(run.status, 1);
  assert.match(
    run.stderr,
    new RegExp(
      `uses format ${config.format + 1}; this Diskline reads format ${config.format} only — upgrade Diskline`,
    ),
  );
  assert.equal(await treeHash(repo), before);
});

test('init refuses to make an unencrypted repository unless asked, and a non-empty directory', async () => {
  const target = join(dir, 'plain');
  const refused = await runCli(['init', '--repo', target], { DISKLINE_PASSWORD: undefined });
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /--insecure-no-encryption/);
  const made = await runCli(['init', '--repo', target, '--insecure-no-encryption', '--json'], {
    DISKLINE_PASSWORD: undefined,
  });
  assert.equal(made.status, 0, made.stderr);
  assert.deepEqual(JSON.parse(made.stdout).encrypted, false);
  const again = await runCli(['init', '--repo', target]);
  assert.equal(again.status, 3);
  assert.match(again.stderr, /not empty/);
  const backup = await runCli(['backup', join(dir, 'b.img'), '--repo', target, '--json'], {
    DISKLINE_PASSWORD: undefined,
  });
  assert.equal(backup.status, 0, backup.stderr);
  const restored = join(dir, 'plain-out.img');
  const restore = await runCli(['restore', 'latest', '--repo', target, '--to', restored], {
    DISKLINE_PASSWORD: undefined,
  });
  assert.equal(restore.status, 0, restore.stderr);
  assert.equal(sha(await readFile(restored)), sha(imageB));
});

const noLoop = loopUnavailableReason();

test('restore refuses a device that is too small, mounted, or not confirmed, and an attached image — writing nothing', {
  skip: noLoop ?? false,
}, async () => {
  const repo = await copyRepo('targets');
  const small = join(dir, 'small.img');
  await writeFile(small, Buffer.alloc(UNIT * 40, 9));
  const smallLoop = await attachLoop(small);
  try {
    const run = await runCli(['restore', pointA, '--repo', repo, '--to', smallLoop.device, '--yes']);
    assert.equal(run.status, 3);
    assert.match(
      run.stderr,
      new RegExp(
        `${smallLoop.device} is ${UNIT * 40} bytes, smaller than restore point ${pointA} \\(${UNIT * 48} bytes\\)`,
      ),
    );
    const unconfirmed = join(dir, 'big.img');
    await writeFile(unconfirmed, Buffer.alloc(UNIT * 64, 9));
    const bigLoop = await attachLoop(unconfirmed);
    try {
      const noYes = await runCli(['restore', pointA, '--repo', repo, '--to', bigLoop.device]);
      assert.equal(noYes.status, 3);
      assert.match(noYes.stderr, /overwrites that device; check it is the right one and add --yes/);
      const attached = await runCli(['restore', pointA, '--repo', repo, '--to', unconfirmed]);
      assert.equal(attached.status, 3);
      assert.match(attached.stderr, new RegExp(`${unconfirmed} is attached as ${bigLoop.device}`));
      await makeFilesystem(bigLoop.device, 'ext4');
      await withMount(bigLoop.device, 'ext4', async (mountDir) => {
        const mounted = await runCli(['restore', pointA, '--repo', repo, '--to', bigLoop.device, '--yes']);
        assert.equal(mounted.status, 3);
        assert.match(
          mounted.stderr,
          new RegExp(`${bigLoop.device} is in use \\(${bigLoop.device} on ${mountDir}`),
        );
      });
      // Mounting changes the superblock, so no hash: the file system checks clean, so nothing overwrote it.
      await checkFilesystem(bigLoop.device, 'ext4');
      const ok = await runCli(['restore', pointA, '--repo', repo, '--to', bigLoop.device, '--yes']);
      assert.equal(ok.status, 0, ok.stderr);
    } finally {
      await bigLoop.detach();
    }
    assert.equal(
      sha((await readFile(unconfirmed)).subarray(0, imageA.length)),
      sha(imageA),
      'a confirmed device restore is exact',
    );
  } finally {
    await smallLoop.detach();
  }
  assert.equal(
    sha(await readFile(small)),
    sha(Buffer.alloc(UNIT * 40, 9)),
    'the small device was not written',
  );
});

test('an index file that fails its check is reported', async () => {
  const repo = await copyRepo('bad-index');
  const [first] = await readdir(join(repo, 'index'));
  const path = join(repo, 'index', first!);
  const bytes = await readFile(path);
  bytes[bytes.length - 3]! ^= 1;
  await writeFile(path, bytes);
  const verify = await runCli(['verify', '--repo', repo]);
  assert.equal(verify.status, 4);
  assert.match(verify.stdout, /index file index\/[0-9a-f]+ is damaged: it fails authentication/);
});
