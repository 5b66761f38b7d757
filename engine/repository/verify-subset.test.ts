// verify --read-data-subset: N/M parts partition the packs (M runs read each pack once, and exactly the run
// holding a damaged pack finds it), P% samples, and a malformed subset is a usage error.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { packFileName } from './pack.ts';
import { Repository } from './repository.ts';
import { backupImage } from './testing/backup-image.ts';
import { runCli, TEST_PASSWORD } from './testing/run-cli.ts';
import { parseReadDataSubset, verifyRepository } from './verify.ts';

const UNIT = 64 * 1024;
let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-verify-subset-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('N/M parts cover every pack once and only the part holding a damaged pack reports it; P% samples', async () => {
  const path = join(dir, 'repo');
  const repo = await Repository.init(path, {
    password: TEST_PASSWORD,
    scrypt: { N: 1024, r: 8, p: 1 },
    packSize: 256 * 1024,
  });
  const image = join(dir, 'disk.img');
  // Random units: each group of 64 units (4 MiB) fills a pack of its own.
  await writeFile(image, randomBytes(8 * 64 * UNIT));
  await backupImage(repo, image);
  const index = await repo.loadIndex(true);
  const packs = [...index.packs()];
  assert.ok(packs.length >= 6, `enough packs to sample: ${packs.length}`);
  const whole = await verifyRepository(repo, { readData: true });
  assert.ok(whole.ok);
  const parts = 4;
  let bytes = 0;
  for (let n = 1; n <= parts; n++) {
    const subset = parseReadDataSubset(`${n}/${parts}`);
    bytes += (await verifyRepository(repo, { readData: true, readDataSubset: subset })).bytesRead;
  }
  assert.equal(bytes, whole.bytesRead, 'the parts together read what --read-data reads');

  // Flip a byte inside the stored bytes of one group (its sealed data, not its header).
  const [, victim] = [...index.entries()].find(([, entry]) => entry.pack === packs[2])!;
  const file = await open(join(path, packFileName(victim.pack)), 'r+');
  const at = victim.blobOffset + victim.blobLength - 20;
  const byte = Buffer.alloc(1);
  await file.read(byte, 0, 1, at);
  byte[0]! ^= 0x01;
  await file.write(byte, 0, 1, at);
  await file.close();
  assert.ok((await verifyRepository(repo, { readData: false })).ok, 'the structure check does not read data');

  let finding = 0;
  for (let n = 1; n <= parts; n++) {
    const report = await verifyRepository(repo, {
      readData: true,
      readDataSubset: parseReadDataSubset(`${n}/${parts}`),
    });
    const holdsVictim = parseReadDataSubset(`${n}/${parts}`)(victim.pack);
    assert.equal(
      report.ok,
      !holdsVictim,
      `part ${n}/${parts} finds the damage exactly when it reads that pack`,
    );
    if (!report.ok) finding += 1;
  }
  assert.equal(finding, 1);
  assert.equal(bytes, whole.bytesRead, 'the parts together read what --read-data reads');
  assert.equal(
    (await verifyRepository(repo, { readData: true, readDataSubset: parseReadDataSubset('100%') })).ok,
    false,
  );
  const none = await verifyRepository(repo, {
    readData: true,
    readDataSubset: parseReadDataSubset('0.001%'),
  });
  assert.ok(none.bytesRead < whole.bytesRead);
  await repo.close();

  const cli = await runCli(['verify', '--repo', path, '--read-data-subset', '100%']);
  assert.equal(cli.status, 4, cli.stderr);
  for (const bad of ['0/3', '4/3', '0%', '150%', 'half']) {
    const run = await runCli(['verify', '--repo', path, '--read-data-subset', bad]);
    assert.equal(run.status, 2, `${bad}: ${run.stderr}`);
    assert.match(run.stderr, /expected N\/M/);
  }
});
