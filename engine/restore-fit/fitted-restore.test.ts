// Restores onto a smaller and a bigger disk, proved on real file systems: every file's checksum equal, the file
// system's own checker clean, the partition table valid at the new end (sgdisk -v), the layout as planned — and
// every refusal (XFS to shrink, data that does not fit) leaves the target byte for byte as it was.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runBackup } from '../jobs/backup.ts';
import type { JobContext } from '../jobs/manager.ts';
import { runRestore } from '../jobs/restore.ts';
import type { FitPlan } from '../partition/fit-layout.ts';
import { testBit } from '../repository/manifest.ts';
import { Repository } from '../repository/repository.ts';
import { usedMapOf as pointUsedMap } from '../repository/testing/point-chunks.ts';
import { runCli } from '../repository/testing/run-cli.ts';
import { buildTestDisk, type TestDisk, type TestPartitionSpec } from '../testing/disk.ts';
import { checkFilesystem, readFilesystemChecksums, type TestFilesystem } from '../testing/filesystems.ts';
import { MiB, makeSparseImage, readPartitionTable } from '../testing/image.ts';
import { attachLoopRange } from '../testing/loop.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';

const GiB = 1024 * MiB;
const ESP = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const PASSWORD = 'fitted restore passphrase, long enough';
const skip: string | false =
  loopUnavailableReason() ??
  missingToolReason(
    'sgdisk',
    'resize2fs',
    'ntfsresize',
    'btrfs',
    'mkfs.xfs',
    'mkfs.vfat',
    'mkfs.ntfs',
    'fsck.vfat',
  ) ??
  false;

let dir = '';
const savedPassword = process.env.DISKLINE_PASSWORD;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-fit-test-'));
  process.env.DISKLINE_PASSWORD = PASSWORD;
});
after(async () => {
  if (savedPassword === undefined) delete process.env.DISKLINE_PASSWORD;
  else process.env.DISKLINE_PASSWORD = savedPassword;
  if (dir) await rm(dir, { recursive: true, force: true });
});

const context: JobContext = { id: 'test', signal: new AbortController().signal, progress: () => undefined };

async function backedUp(
  name: string,
  spec: { size: number; table: 'gpt' | 'dos'; partitions: TestPartitionSpec[] },
) {
  const disk = await buildTestDisk(join(dir, `${name}.img`), spec);
  const repoPath = join(dir, `${name}-repo`);
  const repo = await Repository.init(repoPath, { password: PASSWORD, scrypt: { N: 1024, r: 8, p: 1 } });
  await repo.close();
  const started = performance.now();
  const result = await runBackup(
    { source: disk.image, repo: repoPath, container: undefined, volume: null },
    context,
    () => undefined,
  );
  console.log(
    `# ${name}: backup of ${spec.size / MiB} MiB took ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
  return { disk, repoPath, point: String(result.point) };
}

async function fileHash(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Each restored partition's files equal the source's and its checker finds it clean. */
async function assertPartitionsIntact(target: string, disk: TestDisk, plan: FitPlan): Promise<void> {
  for (const source of disk.partitions) {
    if (!source.filesystem) continue;
    const placed = plan.partitions.find((p) => p.index === source.number)!;
    const loop = await attachLoopRange(target, placed.to.start, placed.to.size);
    try {
      await checkFilesystem(loop.device, source.filesystem as TestFilesystem);
      const files = await readFilesystemChecksums(loop.device, source.filesystem as TestFilesystem);
      assert.deepEqual(
        files,
        source.files,
        `partition ${source.number} (${source.filesystem}): every file equal`,
      );
    } finally {
      await loop.detach();
    }
  }
}

/** The table on the target says what the plan said. */
async function assertLayoutAsPlanned(target: string, plan: FitPlan): Promise<void> {
  const table = await readPartitionTable(target);
  assert.deepEqual(
    table.partitions.map((p) => ({ start: p.start, size: p.size })),
    [...plan.partitions]
      .sort((a, b) => a.index - b.index)
      .map((p) => ({ start: p.to.start, size: p.to.size })),
  );
  if (plan.table === 'gpt') {
    const verified = await runTool('sgdisk', ['-v', target]);
    assert.match(verified.stdout, /No problems found/, verified.stdout);
  }
}

test('a GPT disk with an ESP and a 4 GiB ext4 root holding 1 GiB restores onto a 2 GiB disk', {
  skip,
}, async () => {
  const { disk, repoPath, point } = await backedUp('gpt-ext4', {
    size: 4 * GiB,
    table: 'gpt',
    partitions: [
      { size: 64 * MiB, type: ESP, filesystem: 'fat32', fill: { files: 10 } },
      { filesystem: 'ext4', fill: { files: 240, maxFileSize: 8 * MiB, directories: 12, deletedFiles: 20 } },
    ],
  });
  // The proof means something only if the root had blocks past the new end: they must have been moved.
  const repo = await Repository.open(repoPath, { password: PASSWORD });
  const manifest = await repo.loadManifest(point);
  const used = await pointUsedMap(repo, manifest);
  await repo.close();
  let usedPastNewEnd = 0;
  for (let unit = Math.ceil((2 * GiB) / manifest.unitSize); unit < manifest.unitCount; unit++) {
    if (testBit(used, unit)) usedPastNewEnd++;
  }
  assert.ok(usedPastNewEnd > 100, `the source's root used ${usedPastNewEnd} units past 2 GiB`);

  // The target is a real disk: a loop device over a 2 GiB file.
  const backing = await makeSparseImage(join(dir, 'gpt-ext4-target.img'), 2 * GiB);
  const loop = await attachLoopRange(backing, 0, 2 * GiB);
  let plan: FitPlan;
  const started = performance.now();
  try {
    const result = await runRestore({ repo: repoPath, point, to: loop.device }, context);
    plan = result.plan as FitPlan;
    console.log(
      `# gpt-ext4: restore onto 2 GiB took ${((performance.now() - started) / 1000).toFixed(1)} s: ${JSON.stringify(result.seconds)}`,
    );
  } finally {
    await loop.detach();
  }
  assert.equal(plan.mode, 'shrink');
  assert.deepEqual(
    plan.partitions.map((p) => p.change),
    ['kept', 'shrunk'],
  );
  assert.equal(
    plan.partitions[1]!.to.start + plan.partitions[1]!.to.size,
    2 * GiB - MiB,
    'the root ends at the last whole MiB before the backup table',
  );
  await assertLayoutAsPlanned(backing, plan);
  await assertPartitionsIntact(backing, disk, plan);
});

test('an MBR disk whose last partition is NTFS restores onto a smaller disk', { skip }, async () => {
  const { disk, repoPath, point } = await backedUp('mbr-ntfs', {
    size: 1 * GiB,
    table: 'dos',
    partitions: [
      { size: 200 * MiB, filesystem: 'ext4', fill: { files: 30, maxFileSize: 2 * MiB } },
      { filesystem: 'ntfs', fill: { files: 80, maxFileSize: 4 * MiB, directories: 6 } },
    ],
  });
  const target = join(dir, 'mbr-ntfs-target.img');
  const result = await runRestore({ repo: repoPath, point, to: target, targetSize: 640 * MiB }, context);
  const plan = result.plan as FitPlan;
  assert.equal(plan.mode, 'shrink');
  assert.equal(plan.partitions[1]!.to.start + plan.partitions[1]!.to.size, 640 * MiB);
  await assertLayoutAsPlanned(target, plan);
  await assertPartitionsIntact(target, disk, plan);
});

test('a GPT disk whose last partition is btrfs restores onto a smaller disk', { skip }, async () => {
  const { disk, repoPath, point } = await backedUp('gpt-btrfs', {
    size: 1 * GiB,
    table: 'gpt',
    partitions: [
      { size: 64 * MiB, type: ESP, filesystem: 'fat32', fill: { files: 5 } },
      { filesystem: 'btrfs', fill: { files: 80, maxFileSize: 4 * MiB, directories: 6 } },
    ],
  });
  const target = join(dir, 'gpt-btrfs-target.img');
  const result = await runRestore({ repo: repoPath, point, to: target, targetSize: 640 * MiB }, context);
  const plan = result.plan as FitPlan;
  assert.equal(plan.mode, 'shrink');
  await assertLayoutAsPlanned(target, plan);
  await assertPartitionsIntact(target, disk, plan);
});

test('an XFS partition that would have to shrink is refused with the size it needs; the target is untouched', {
  skip,
}, async () => {
  const { repoPath, point } = await backedUp('gpt-xfs', {
    size: 1 * GiB,
    table: 'gpt',
    partitions: [{ filesystem: 'xfs', fill: { files: 10 } }],
  });
  const target = join(dir, 'gpt-xfs-target.img');
  await writeFile(target, Buffer.alloc(512 * MiB, 0x5a));
  const before = await fileHash(target);
  await assert.rejects(
    runRestore({ repo: repoPath, point, to: target, targetSize: 512 * MiB }, context),
    (error: Error & { neededBytes?: number; kind?: string }) => {
      assert.match(error.message, /XFS cannot be shrunk/);
      assert.equal(error.kind, 'refusal');
      assert.ok(error.neededBytes! >= GiB - MiB, `needs ${error.neededBytes}`);
      return true;
    },
  );
  assert.equal(await fileHash(target), before, 'the target keeps every byte');
});

test('data that cannot fit is refused before the target is touched, by the plan or by resize2fs', {
  skip,
}, async () => {
  const { repoPath, point } = await backedUp('gpt-full', {
    size: 1 * GiB,
    table: 'gpt',
    partitions: [{ filesystem: 'ext4', fill: { files: 60, maxFileSize: 12 * MiB, directories: 4 } }],
  });
  const target = join(dir, 'gpt-full-target.img');
  for (const size of [128 * MiB, 400 * MiB]) {
    await writeFile(target, Buffer.alloc(size, 0xa5));
    const before = await fileHash(target);
    await assert.rejects(
      runRestore({ repo: repoPath, point, to: target, targetSize: size }, context),
      (error: Error & { neededBytes?: number }) => {
        assert.match(error.message, /at least \d+ bytes/);
        assert.ok(error.neededBytes! > size);
        return true;
      },
    );
    assert.equal(await fileHash(target), before, `the ${size / MiB} MiB target keeps every byte`);
  }
});

test('onto a bigger disk the GPT moves to the new end, and --grow grows the last partition and its ext4', {
  skip,
}, async () => {
  const { disk, repoPath, point } = await backedUp('gpt-grow', {
    size: 512 * MiB,
    table: 'gpt',
    partitions: [
      { size: 64 * MiB, type: ESP, filesystem: 'fat32', fill: { files: 5 } },
      { filesystem: 'ext4', fill: { files: 20, maxFileSize: 2 * MiB } },
    ],
  });
  const kept = join(dir, 'gpt-grow-kept.img');
  const keptPlan = (await runRestore({ repo: repoPath, point, to: kept, targetSize: GiB }, context))
    .plan as FitPlan;
  assert.equal(keptPlan.mode, 'table-moved');
  await assertLayoutAsPlanned(kept, keptPlan);
  await assertPartitionsIntact(kept, disk, keptPlan);

  const grown = join(dir, 'gpt-grow-grown.img');
  const plan = (await runRestore({ repo: repoPath, point, to: grown, targetSize: GiB, grow: true }, context))
    .plan as FitPlan;
  assert.equal(plan.mode, 'grow');
  assert.equal(plan.partitions[1]!.to.start + plan.partitions[1]!.to.size, GiB - MiB);
  await assertLayoutAsPlanned(grown, plan);
  await assertPartitionsIntact(grown, disk, plan);
  const loop = await attachLoopRange(grown, plan.partitions[1]!.to.start, plan.partitions[1]!.to.size);
  try {
    const header = (await runTool('dumpe2fs', ['-h', loop.device])).stdout;
    const blocks = Number(/^Block count:\s*(\d+)/m.exec(header)![1]);
    const blockSize = Number(/^Block size:\s*(\d+)/m.exec(header)![1]);
    assert.equal(
      blocks * blockSize,
      plan.partitions[1]!.to.size,
      'the file system fills the grown partition',
    );
  } finally {
    await loop.detach();
  }
});

test('restore --plan prints the layout and changes nothing; the restore then writes that layout', {
  skip,
}, async () => {
  const { disk, repoPath } = await backedUp('cli', {
    size: 512 * MiB,
    table: 'gpt',
    partitions: [
      { size: 64 * MiB, type: ESP, filesystem: 'fat32', fill: { files: 5 } },
      { filesystem: 'ext4', fill: { files: 20, maxFileSize: 2 * MiB } },
    ],
  });
  const target = join(dir, 'cli-target.img');
  await writeFile(target, Buffer.alloc(384 * MiB, 0x33));
  const before = await fileHash(target);
  // No engine service: the command runs the restore itself.
  const env = { DISKLINE_PASSWORD: PASSWORD, DISKLINE_SOCKET: join(dir, 'no-daemon.sock') };
  const planned = await runCli(
    ['restore', 'latest', '--repo', repoPath, '--to', target, '--size', '384M', '--plan', '--json'],
    env,
  );
  assert.equal(planned.status, 0, planned.stderr);
  const plan = JSON.parse(planned.stdout) as FitPlan;
  assert.equal(plan.mode, 'shrink');
  assert.equal(await fileHash(target), before, '--plan changed nothing');
  const refused = await runCli(
    ['restore', 'latest', '--repo', repoPath, '--to', target, '--size', '32M', '--plan'],
    env,
  );
  assert.equal(refused.status, 3, 'a plan the target cannot take exits 3');
  assert.match(refused.stdout, /refused: .*at least \d+ bytes/);
  const restored = await runCli(
    ['restore', 'latest', '--repo', repoPath, '--to', target, '--size', '384M', '--json'],
    env,
  );
  assert.equal(restored.status, 0, restored.stderr);
  await assertLayoutAsPlanned(target, plan);
  await assertPartitionsIntact(target, disk, plan);
});

test('a chosen partition shrinks and the NTFS after it moves, its boot sector told where it now starts', {
  skip,
}, async () => {
  const { disk, repoPath, point } = await backedUp('moved', {
    size: 1 * GiB,
    table: 'gpt',
    partitions: [
      { size: 700 * MiB, filesystem: 'ext4', fill: { files: 40, maxFileSize: 4 * MiB, directories: 4 } },
      { filesystem: 'ntfs', fill: { files: 20, maxFileSize: 2 * MiB } },
    ],
  });
  const target = join(dir, 'moved-target.img');
  const result = await runRestore(
    { repo: repoPath, point, to: target, targetSize: 640 * MiB, resize: 1 },
    context,
  );
  const plan = result.plan as FitPlan;
  assert.deepEqual(
    plan.partitions.map((p) => p.change),
    ['shrunk', 'moved'],
  );
  await assertLayoutAsPlanned(target, plan);
  await assertPartitionsIntact(target, disk, plan);
  const moved = plan.partitions[1]!;
  const { open } = await import('node:fs/promises');
  const handle = await open(target, 'r');
  try {
    const sector = Buffer.alloc(512);
    for (const at of [moved.to.start, moved.to.start + moved.to.size - 512]) {
      await handle.read(sector, 0, 512, at);
      assert.equal(sector.toString('latin1', 3, 11), 'NTFS    ');
      assert.equal(
        sector.readUInt32LE(28),
        moved.to.start / 512,
        `hidden sectors of the boot sector at ${at}`,
      );
    }
  } finally {
    await handle.close();
  }
});

test('an MBR disk whose last partition is a logical ext4 restores onto a smaller disk', {
  skip,
}, async () => {
  const { disk, repoPath, point } = await backedUp('logical', {
    size: 1 * GiB,
    table: 'dos',
    partitions: [
      { size: 100 * MiB, filesystem: 'ext4', fill: { files: 5 } },
      { type: 'E', filesystem: null },
      { filesystem: 'ext4', fill: { files: 40, maxFileSize: 4 * MiB, directories: 4 } },
    ],
  });
  const target = join(dir, 'logical-target.img');
  const plan = (await runRestore({ repo: repoPath, point, to: target, targetSize: 512 * MiB }, context))
    .plan as FitPlan;
  assert.equal(plan.mode, 'shrink');
  assert.equal(plan.partitions.find((p) => p.index === 5)!.change, 'shrunk');
  const table = await readPartitionTable(target);
  const logical = table.partitions.find((p) => p.node.endsWith('5'))!;
  const shrunk = plan.partitions.find((p) => p.index === 5)!;
  assert.deepEqual({ start: logical.start, size: logical.size }, shrunk.to);
  const extended = table.partitions.find((p) => p.type === '5')!;
  assert.ok(
    extended.start + extended.size <= 512 * MiB &&
      extended.start + extended.size >= shrunk.to.start + shrunk.to.size,
  );
  await assertPartitionsIntact(
    target,
    { ...disk, partitions: disk.partitions.filter((p) => p.filesystem) },
    plan,
  );
});
