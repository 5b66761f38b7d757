// Bad input, each met with a specific error and nothing changed: damaged, truncated or missing packs and
// manifests; manifests, index files and packs swapped, copied or renamed; files that are FIFOs or links; config
// fields outside the format; a wrong passphrase, a weak one, a newer format; and restore targets that are too
// small, mounted, attached or a device without --yes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  copyFile,
  cp,
  mkdtemp,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { checkFilesystem, makeFilesystem, withMount } from '../testing/filesystems.ts';
import { attachLoop } from '../testing/loop.ts';
import { loopUnavailableReason } from '../testing/tools.ts';
import { packFileName } from './pack.ts';
import { Repository } from './repository.ts';
import { backupImage } from './testing/backup-image.ts';
import { rewriteAsFormat2 } from './testing/format-2.ts';
import { patternedImage, writeImage } from './testing/patterned-image.ts';
import { chunkIdsOf } from './testing/point-chunks.ts';
import { runCli, TEST_PASSWORD } from './testing/run-cli.ts';

const UNIT = 64 * 1024;
let dir: string;
let pristine: string;
let imageA: Buffer;
let imageB: Buffer;
let pointA: string;
let pointB: string;
let packsOfA: string[];
let packsOfB: string[];

const mkfifo = (path: string): void => {
  execFileSync('mkfifo', [path]);
};

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
  const packs = async (m: typeof a) => new Set((await chunkIdsOf(repo, m)).map((id) => index.get(id)!.pack));
  const ofB = await packs(b);
  const ofA = await packs(a);
  packsOfA = [...ofA].filter((p) => !ofB.has(p));
  packsOfB = [...ofB].filter((p) => !ofA.has(p));
  assert.ok(packsOfA.length > 0 && packsOfB.length > 0);
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

for (const cut of ['head', 'segment list'] as const) {
  test(`a point file cut in its ${cut}: verify names the point, restore says it is damaged; points names it when its head is cut`, async () => {
    const repo = await copyRepo(`bad-manifest-${cut.replace(' ', '-')}`);
    const manifest = join(repo, 'points', pointA);
    // The head is read alone (points lists heads only); the segment list follows it, to the file's end.
    await truncate(manifest, cut === 'head' ? 40 : (await stat(manifest)).size - 10);
    const verify = await runCli(['verify', '--repo', repo]);
    assert.equal(verify.status, 4);
    assert.match(
      verify.stdout,
      new RegExp(`DAMAGED point ${pointA}:\\n  - manifest of point ${pointA} is damaged`),
    );
    const points = await runCli(['points', '--repo', repo, '--json']);
    if (cut === 'head') {
      assert.equal(points.status, 4);
      assert.match(points.stderr, new RegExp(`point ${pointA} cannot be read`));
      assert.deepEqual(
        JSON.parse(points.stdout).map((p: { id: string }) => p.id),
        [pointB],
      );
    } else {
      assert.equal(points.status, 0, points.stderr);
      assert.deepEqual(
        JSON.parse(points.stdout)
          .map((p: { id: string }) => p.id)
          .sort(),
        [pointA, pointB].sort(),
      );
    }
    const never = join(dir, `never-${cut.replace(' ', '-')}.img`);
    const restore = await runCli(['restore', pointA, '--repo', repo, '--to', never]);
    assert.equal(restore.status, 4);
    assert.match(
      restore.stderr,
      /manifest of point [0-9a-f]+ is damaged: (it fails authentication|its head is cut short)/,
    );
    await assert.rejects(stat(never), /ENOENT/);
  });
}

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
      `uses format ${config.format + 1}; this Diskline reads formats 2 to ${config.format} only — upgrade Diskline`,
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
        `${smallLoop.device} \\(${UNIT * 40} bytes\\) cannot take restore point ${pointA}: it holds ${UNIT * 40} bytes but the point needs ${UNIT * 48}`,
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

// ---- files under another name: a repository that cannot lie ----

const someId = () => randomBytes(16).toString('hex');

/** Exchanges two files' contents by renaming. */
async function swapFiles(a: string, b: string): Promise<void> {
  await rename(a, `${a}.swapping`);
  await rename(b, a);
  await rename(`${a}.swapping`, b);
}

/** Every way a file can come under another name without the key: returns the names now holding another's file. */
const moves = {
  swapped: async (folder: string, a: string, b: string) => {
    await swapFiles(join(folder, a), join(folder, b));
    return [a, b];
  },
  copied: async (folder: string, a: string, b: string) => {
    await copyFile(join(folder, a), join(folder, b));
    return [b];
  },
  renamed: async (folder: string, a: string) => {
    const c = someId();
    await rename(join(folder, a), join(folder, c));
    return [c];
  },
} as const;

for (const format of [3, 2] as const) {
  for (const [how, move] of Object.entries(moves)) {
    test(`format ${format}: a ${how} manifest is damage to points, verify and restore, never another point's disk`, async () => {
      const repo = await copyRepo(`manifest-${how}-${format}`);
      if (format === 2) await rewriteAsFormat2(repo, TEST_PASSWORD);
      const wrong = await move(join(repo, 'points'), pointA, pointB);
      // A renamed manifest leaves its point without one (listed no more); the rest must restore exactly.
      const sound = [pointA, pointB].filter(
        (id) => !wrong.includes(id) && !(how === 'renamed' && id === pointA),
      );
      const points = await runCli(['points', '--repo', repo, '--json']);
      assert.equal(points.status, 4, points.stderr);
      assert.deepEqual(
        JSON.parse(points.stdout).map((p: { id: string }) => p.id),
        sound,
      );
      const verify = await runCli(['verify', '--repo', repo]);
      assert.equal(verify.status, 4, verify.stdout);
      for (const id of wrong) {
        assert.match(
          points.stderr,
          new RegExp(`point ${id} cannot be read: manifest of point ${id} is damaged`),
        );
        assert.match(
          verify.stdout,
          new RegExp(`DAMAGED point ${id}:\\n  - manifest of point ${id} is damaged`),
        );
        const target = join(dir, `manifest-${how}-${format}-${id}.img`);
        const restore = await runCli(['restore', id, '--repo', repo, '--to', target]);
        assert.equal(restore.status, 4, restore.stderr);
        assert.match(
          restore.stderr,
          format === 3
            ? new RegExp(
                `manifest of point ${id} is damaged: it fails authentication \\(changed, truncated, or moved from another name\\)`,
              )
            : new RegExp(
                `manifest of point ${id} is damaged: it holds point [0-9a-f]{32} \\(a manifest copied or moved`,
              ),
        );
        await assert.rejects(stat(target), /ENOENT/, 'nothing was written');
      }
      for (const id of sound) {
        const target = join(dir, `manifest-${how}-${format}-${id}-sound.img`);
        const restore = await runCli(['restore', id, '--repo', repo, '--to', target]);
        assert.equal(restore.status, 0, restore.stderr);
        assert.equal(sha(await readFile(target)), sha(id === pointA ? imageA : imageB));
      }
    });
  }
}

for (const [how, move] of Object.entries(moves)) {
  test(`a ${how} index file is damage to verify and restore`, async () => {
    const repo = await copyRepo(`index-${how}`);
    const folder = join(repo, 'index');
    const [first, second] = (await readdir(folder)).sort();
    assert.ok(first && second, 'two index files');
    const wrong = await move(folder, first, how === 'copied' ? someId() : second);
    const verify = await runCli(['verify', '--repo', repo]);
    assert.equal(verify.status, 4);
    for (const name of wrong)
      assert.match(
        verify.stdout,
        new RegExp(
          `index file index/${name} is damaged: it fails authentication \\(changed, truncated, or moved from another name\\)`,
        ),
      );
    const target = join(dir, `index-${how}.img`);
    const restore = await runCli(['restore', pointA, '--repo', repo, '--to', target]);
    assert.equal(restore.status, 4, restore.stderr);
    assert.match(restore.stderr, new RegExp(`index file index/(${wrong.join('|')}) is damaged`));
    await assert.rejects(stat(target), /ENOENT/, 'nothing was written');
  });
}

for (const [how, move] of Object.entries(moves)) {
  test(`a ${how} pack is damage to verify and restore, found before the target is touched`, async () => {
    const repo = await copyRepo(`pack-${how}`);
    const packA = packsOfA[0]!;
    const packB = packsOfB[0]!;
    const folder = join(repo, 'packs');
    await move(
      folder,
      packFileName(packA).slice('packs/'.length),
      packFileName(packB).slice('packs/'.length),
    );
    // What each point finds where its pack should be.
    const found: Record<string, RegExp> = {
      swapped: new RegExp(
        `pack (${packA} is damaged: it holds pack ${packB}|${packB} is damaged: it holds pack ${packA})`,
      ),
      copied: new RegExp(
        `pack ${packB} is damaged: it holds pack ${packA} \\(a pack copied or moved to another name\\)`,
      ),
      renamed: new RegExp(`pack ${packA} is missing`),
    };
    const hurt = how === 'copied' ? [pointB] : how === 'renamed' ? [pointA] : [pointA, pointB];
    const verify = await runCli(['verify', '--repo', repo]);
    assert.equal(verify.status, 4);
    assert.match(verify.stdout, found[how]!);
    for (const id of hurt) {
      assert.match(verify.stdout, new RegExp(`DAMAGED point ${id}`));
      const target = join(dir, `pack-${how}-${id}.img`);
      await writeFile(target, Buffer.alloc(UNIT * 48, 7));
      const restore = await runCli(['restore', id, '--repo', repo, '--to', target]);
      assert.equal(restore.status, 4, restore.stderr);
      assert.match(
        restore.stderr,
        new RegExp(`restore point ${id} is damaged: ${found[how]!.source}.*nothing was written`),
      );
      assert.equal(sha(await readFile(target)), sha(Buffer.alloc(UNIT * 48, 7)), 'the target is unchanged');
    }
  });
}

// ---- files that are not files: refused at once, unread ----

/** Runs the CLI; the deadline only guards against a hang (a FIFO opened for reading blocks until a writer comes). */
const HANG_GUARD = { timeout: 120_000 };

test(
  'a config that is a FIFO, a link to /dev/zero or huge is refused at once with what it is',
  HANG_GUARD,
  async () => {
    const cases: [string, (path: string) => Promise<void>, RegExp][] = [
      ['fifo', async (path) => mkfifo(path), /config is a FIFO, not a regular file; refused unread/],
      [
        'zero',
        async (path) => symlink('/dev/zero', path),
        /config is a symbolic link, not a regular file; refused unread/,
      ],
      [
        'huge',
        async (path) => writeFile(path, Buffer.alloc(1 << 20, 0x20)),
        /config holds 1048576 bytes, more than such a file may \(65536\); refused unread/,
      ],
    ];
    for (const [name, make, message] of cases) {
      const repo = await copyRepo(`config-${name}`);
      await rm(join(repo, 'config'));
      await make(join(repo, 'config'));
      const run = await runCli(['points', '--repo', repo]);
      assert.equal(run.status, 4, `${name}: ${run.stderr}`);
      assert.match(run.stderr, new RegExp(`repository ${repo} is damaged: ${message.source}`));
    }
  },
);

test(
  'a manifest, index file or pack that is a FIFO or a link is refused by name; the rest still reads',
  HANG_GUARD,
  async () => {
    const repo = await copyRepo('unsafe-files');
    await rm(join(repo, 'points', pointA));
    mkfifo(join(repo, 'points', pointA));
    const points = await runCli(['points', '--repo', repo, '--json']);
    assert.equal(points.status, 4);
    assert.match(
      points.stderr,
      new RegExp(`manifest of point ${pointA} is damaged: points/${pointA} is a FIFO, not a regular file`),
    );
    assert.deepEqual(
      JSON.parse(points.stdout).map((p: { id: string }) => p.id),
      [pointB],
    );
    const pack = join(repo, packFileName(packsOfB[0]!));
    await rm(pack);
    mkfifo(pack);
    const restore = await runCli(['restore', pointB, '--repo', repo, '--to', join(dir, 'unsafe-b.img')]);
    assert.equal(restore.status, 4);
    assert.match(
      restore.stderr,
      new RegExp(`pack ${packsOfB[0]} is damaged: ${packFileName(packsOfB[0]!)} is a FIFO`),
    );
    const [indexFile] = await readdir(join(repo, 'index'));
    await rm(join(repo, 'index', indexFile!));
    await symlink('/dev/zero', join(repo, 'index', indexFile!));
    const verify = await runCli(['verify', '--repo', repo]);
    assert.equal(verify.status, 4);
    assert.match(
      verify.stdout,
      new RegExp(`index/${indexFile} is a symbolic link, not a regular file; refused unread`),
    );
    assert.match(
      verify.stdout,
      new RegExp(`manifest of point ${pointA} is damaged: points/${pointA} is a FIFO`),
    );
  },
);

// ---- the config says only what the format allows ----

/** The config as the test edits it. */
type Config = {
  [field: string]: unknown;
  encryption: { cipher: string; wrappedKey: string; kdf: Record<string, unknown> };
};

test('a config field outside the format is damage, named, before any key is derived', async () => {
  const cases: [string, (config: Config) => void, RegExp][] = [
    ['chunk size', (c) => (c.chunkSize = 1000), /its config names chunk size 1000/],
    ['pack size', (c) => (c.packSize = 2 ** 40), /its config names pack size 1099511627776/],
    ['scrypt N', (c) => (c.encryption.kdf.N = 2 ** 30), /its config encryption names scrypt N 1073741824/],
    ['scrypt p', (c) => (c.encryption.kdf.p = 1000), /its config encryption names scrypt p 1000/],
    ['salt', (c) => (c.encryption.kdf.salt = 'c2FsdA=='), /its config encryption holds no 32-byte salt/],
    [
      'wrapped key',
      (c) => (c.encryption.wrappedKey = c.encryption.wrappedKey.slice(0, 40)),
      /its config encryption holds no wrapped key of 92 bytes/,
    ],
    ['cipher', (c) => (c.encryption.cipher = 'none'), /its config encryption names cipher "none"/],
    ['id', (c) => (c.id = '../../etc'), /its config has no repository id of 32 hex digits/],
    ['compression', (c) => (c.compression = 'lz4'), /its config names compression "lz4"/],
    [
      'two keys',
      (c) => (c.masterKey = randomBytes(64).toString('base64')),
      /its config holds both a wrapped and a plain master key/,
    ],
    ['format', (c) => (c.format = '3'), /its config has no format version/],
  ];
  for (const [what, change, message] of cases) {
    const repo = await copyRepo(`config-${what.replace(' ', '-')}`);
    const config = JSON.parse(await readFile(join(repo, 'config'), 'utf8'));
    change(config);
    await writeFile(join(repo, 'config'), JSON.stringify(config));
    const run = await runCli(['points', '--repo', repo]);
    assert.equal(run.status, 4, `${what}: ${run.stderr}`);
    assert.match(run.stderr, message, what);
  }
});

// ---- how a repository is made ----

test('init wants a passphrase of some strength, and makes files 0600 and folders 0700 unless group-readable', async () => {
  for (const [weak, why] of [
    ['hunter2', /it has 7 characters; use at least 10/],
    ['aaaaaaaaaaaaaaaa', /it repeats one character/],
  ] as const) {
    const target = join(dir, `weak-${weak.length}`);
    const refused = await runCli(['init', '--repo', target], { DISKLINE_PASSWORD: weak });
    assert.equal(refused.status, 2);
    assert.match(
      refused.stderr,
      new RegExp(
        `the passphrase is too weak to guard a repository: ${why.source}.*--insecure-weak-passphrase`,
      ),
    );
    await assert.rejects(stat(join(target, 'config')), /ENOENT/);
  }
  const weakOk = await runCli(['init', '--repo', join(dir, 'weak-ok'), '--insecure-weak-passphrase'], {
    DISKLINE_PASSWORD: 'hunter2',
  });
  assert.equal(weakOk.status, 0, weakOk.stderr);
  for (const [name, args, fileMode, folderMode] of [
    ['private', [], 0o600, 0o700],
    ['group', ['--group-readable'], 0o640, 0o750],
  ] as const) {
    const repo = join(dir, `modes-${name}`);
    const init = await runCli(['init', '--repo', repo, ...args]);
    assert.equal(init.status, 0, init.stderr);
    const backup = await runCli(['backup', join(dir, 'a.img'), '--repo', repo]);
    assert.equal(backup.status, 0, backup.stderr);
    const modes = new Set<string>();
    const walk = async (at: string): Promise<void> => {
      const stats = await stat(at);
      modes.add(`${stats.isDirectory() ? 'folder' : 'file'} ${(stats.mode & 0o777).toString(8)}`);
      if (stats.isDirectory()) for (const entry of await readdir(at)) await walk(join(at, entry));
    };
    await walk(repo);
    assert.deepEqual(
      [...modes].sort(),
      [`file ${fileMode.toString(8)}`, `folder ${folderMode.toString(8)}`],
      `${name}: every file and folder`,
    );
  }
});
