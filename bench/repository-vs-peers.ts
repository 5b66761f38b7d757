// Diskline's repository against restic and borg on the same ext4 image: a full backup, an incremental after
// changing ~5% of the files, repository sizes, and restore throughput (repository in the page cache). All three
// are encrypted and compress with zstd (restic: repository v2, compression auto; borg: zstd,3). restic and borg
// back up the image file itself (the same bytes Diskline sees); Diskline reads only the units the file
// system uses. Restores go to a directory in RAM (/dev/shm) when there is one, so that they measure the tools
// rather than the disk's writeback. Prints times, sizes and ratios, measured in this one run on this machine.
//
//   npx node bench/repository-vs-peers.ts [--size 4G] [--chunk-size 64K] [--keep]      (needs root: loop mount of the image)

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openReader } from '../engine/device/open.ts';
import { describeSource, findRelatives } from '../engine/repository/point-source.ts';
import { Repository } from '../engine/repository/repository.ts';
import { backupImage, countingReader } from '../engine/repository/testing/backup-image.ts';
import { parseByteSize } from '../protocol/byte-size.ts';
import { fillFiles } from './fixtures/mixed-files.ts';
import { disklineCli as cli, duBytes, runTool, timedTool } from './tool-runs.ts';

const PASSWORD = 'bench passphrase';

function parseSize(text: string): number {
  const bytes = parseByteSize(text);
  if (bytes === null || bytes < 64 << 20)
    throw new Error(`--size ${text}: expected a size of at least 64M, e.g. 512M or 4G`);
  return Math.floor(bytes / (1 << 20)) * (1 << 20);
}

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '4G' },
    keep: { type: 'boolean', default: false },
    'chunk-size': { type: 'string' },
    help: { type: 'boolean', default: false },
  },
  strict: false,
});
if (values.help) {
  // Without this, --help fell through to a full 4 GiB run.
  process.stdout.write(
    'usage: npx node bench/repository-vs-peers.ts [--size 4G] [--chunk-size 64K] [--keep]\n' +
      '  --size  size of the ext4 image (e.g. 512M, 1G); ~60% of it is filled with files\n' +
      '  --keep  keep the work directory (image, repositories) and print its path\n' +
      "  --chunk-size  Diskline's chunk size (diskline init --chunk-size; default: init's)\n" +
      'needs root (loop mount), restic and borg\n',
  );
  process.exit(0);
}
const size = parseSize(String(values.size));

const env = {
  DISKLINE_PASSWORD: PASSWORD,
  RESTIC_PASSWORD: PASSWORD,
  BORG_PASSPHRASE: PASSWORD,
  BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
  BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
};

const run = (command: string, args: string[], extraEnv: Record<string, string> = {}) =>
  runTool(command, args, { ...env, ...extraEnv });

/** CPU seconds (user + system) of every run, by tool: the figure that holds on a busy machine. */
const cpuSeconds = new Map<string, number>();

/** Wall seconds of one run; its CPU time (from /usr/bin/time) is added to `cpuSeconds` under `label`. */
function timed(
  command: string,
  args: string[],
  extraEnv: Record<string, string> = {},
  label = command === cli ? 'diskline' : command === 'sh' ? 'borg' : command,
): number {
  const { seconds, cpuSeconds: cpu } = timedTool(command, args, { ...env, ...extraEnv });
  if (!Number.isNaN(cpu)) cpuSeconds.set(label, (cpuSeconds.get(label) ?? 0) + cpu);
  return seconds;
}

const MiB = 1 << 20;
const fmt = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const secs = (s: number) => `${s.toFixed(2)} s`;

/** Units of `unitSize` that differ between two images of the same size, as byte ranges. */
async function changedRanges(
  a: string,
  b: string,
  unitSize: number,
): Promise<{ start: number; length: number }[]> {
  const [fa, fb] = await Promise.all([open(a), open(b)]);
  const ranges: { start: number; length: number }[] = [];
  const step = 64 * unitSize;
  const ba = Buffer.allocUnsafe(step);
  const bb = Buffer.allocUnsafe(step);
  try {
    const total = (await fa.stat()).size;
    for (let at = 0; at < total; at += step) {
      const length = Math.min(step, total - at);
      await Promise.all([fa.read(ba, 0, length, at), fb.read(bb, 0, length, at)]);
      for (let u = 0; u < length; u += unitSize) {
        const end = Math.min(u + unitSize, length);
        if (ba.compare(bb, u, end, u, end) === 0) continue;
        const last = ranges.at(-1);
        if (last && last.start + last.length === at + u) last.length += end - u;
        else ranges.push({ start: at + u, length: end - u });
      }
    }
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
  return ranges;
}

/** An incremental backup that reads only the changed units, in this process (CPU of every thread counted). */
async function incrementalFromTrackedChanges(repoPath: string, before: string, after: string) {
  const repo = await Repository.open(repoPath, { password: PASSWORD });
  try {
    const changed = await changedRanges(before, after, repo.chunkSize);
    const reader = await openReader(after);
    const source = await describeSource(after, reader);
    await reader.close();
    const { parent } = await findRelatives(repo, source.identity, false);
    const reads: { start: number; length: number }[] = [];
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const point = await backupImage(repo, after, {
      source: source.identity,
      partitions: source.partitions,
      usedRanges: source.usedRanges,
      parent,
      changedRanges: changed,
      wrapReader: (r) => countingReader(r, reads),
    });
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    return {
      seconds,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      changedBytes: changed.reduce((sum, r) => sum + r.length, 0),
      readBytes: reads.reduce((sum, r) => sum + r.length, 0),
      storedBytes: point.stats.storedBytes,
    };
  } finally {
    await repo.close();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root to loop-mount the ext4 image');
  const work = await mkdtemp(join(tmpdir(), 'diskline-bench-repo-'));
  const image = join(work, 'disk.img');
  const mnt = join(work, 'mnt');
  await mkdir(mnt);
  const out = existsSync('/dev/shm')
    ? await mkdtemp('/dev/shm/diskline-bench-restore-')
    : join(work, 'restored');
  try {
    run('truncate', ['-s', String(size), image]);
    run('mkfs.ext4', ['-q', '-F', image]);
    run('mount', ['-o', 'loop', image, mnt]);
    await fillFiles(mnt, Math.floor(size * 0.6), 'full');
    run('umount', [mnt]);
    run('sync', []);
    process.stdout.write(`ext4 image of ${fmt(size)}, ~60% filled (half random, half text-like files)\n\n`);

    const repos = {
      diskline: join(work, 'diskline'),
      restic: join(work, 'restic'),
      borg: join(work, 'borg'),
    };
    const chunkSize = values['chunk-size'];
    run(cli, ['init', '--repo', repos.diskline, ...(chunkSize ? ['--chunk-size', String(chunkSize)] : [])]);
    run('restic', ['init', '--repository-version', '2', '-r', repos.restic, '-q']);
    run('borg', ['init', '--encryption', 'repokey-blake2', repos.borg]);
    const borgBase = join(work, 'borg-base');
    const borgEnv = { BORG_BASE_DIR: borgBase };
    const resticEnv = { RESTIC_CACHE_DIR: join(work, 'restic-cache') };

    // Read the image once so every tool starts from the page cache.
    run('sh', ['-c', `cat ${image} > /dev/null`]);
    let mark = new Map(cpuSeconds);
    /** CPU seconds per tool since the last call. */
    const cpuSince = () => {
      const spent = Object.fromEntries(
        ['diskline', 'restic', 'borg'].map((tool) => [
          tool,
          (cpuSeconds.get(tool) ?? 0) - (mark.get(tool) ?? 0),
        ]),
      ) as Record<'diskline' | 'restic' | 'borg', number>;
      mark = new Map(cpuSeconds);
      return spent;
    };
    /** Wall seconds of one backup of the image by each tool (borg's archive called `archive`). */
    const backUpEach = (archive: string) => ({
      diskline: timed(cli, ['backup', image, '--repo', repos.diskline, '--json']),
      restic: timed(
        'restic',
        ['-r', repos.restic, 'backup', '--compression', 'auto', '-q', image],
        resticEnv,
      ),
      borg: timed('borg', ['create', '--compression', 'zstd,3', `${repos.borg}::${archive}`, image], borgEnv),
    });
    /** Each tool's repository size on disk. */
    const sizeOfEach = () => ({
      diskline: duBytes(repos.diskline),
      restic: duBytes(repos.restic),
      borg: duBytes(repos.borg),
    });
    const full = backUpEach('full');
    const fullCpu = cpuSince();
    const fullSizes = sizeOfEach();

    // Keep the image and Diskline's repository as they are now, for the incremental from tracked changes.
    const before = join(work, 'before.img');
    run('cp', ['--sparse=always', image, before]);
    const trackedRepo = join(work, 'diskline-tracked');
    run('cp', ['-a', repos.diskline, trackedRepo]);

    // Change ~5%: rewrite some files, add new ones.
    run('mount', ['-o', 'loop', image, mnt]);
    await fillFiles(join(mnt, 'changed'), Math.floor(size * 0.05), 'incr');
    const victim = join(mnt, 'd1');
    run('sh', [
      '-c',
      `ls ${victim} | head -20 | while read f; do head -c 100000 /dev/urandom | dd of=${victim}/$f conv=notrunc status=none; done`,
    ]);
    run('umount', [mnt]);
    run('sync', []);
    run('sh', ['-c', `cat ${image} > /dev/null`]);
    const incremental = backUpEach('incr');
    const incrCpu = cpuSince();
    const tracked = await incrementalFromTrackedChanges(trackedRepo, before, image);
    const incrSizes = sizeOfEach();

    // Restore the latest point of each, with its repository in the page cache: what is no longer needed is
    // removed first, and each restored copy before the next restore, so the cache is not evicted to make room
    // (with 4 GiB images, the repositories, copies and RAM targets otherwise outgrow a 24 GiB machine).
    await rm(before, { force: true });
    await rm(trackedRepo, { recursive: true, force: true });
    await mkdir(out, { recursive: true });
    const restoreWarm = (tool: keyof typeof repos, measure: () => number): number => {
      run('sh', ['-c', `find ${repos[tool]} -type f -exec cat {} + > /dev/null`]);
      const seconds = measure();
      run('sh', ['-c', `rm -rf ${out}/*`]);
      return seconds;
    };
    const restoreTimes = {
      diskline: restoreWarm('diskline', () =>
        timed(cli, [
          'restore',
          'latest',
          '--repo',
          repos.diskline,
          '--to',
          join(out, 'diskline.img'),
          '--json',
        ]),
      ),
      restic: restoreWarm('restic', () =>
        timed(
          'restic',
          ['-r', repos.restic, 'restore', 'latest', '--target', join(out, 'restic'), '-q'],
          resticEnv,
        ),
      ),
      borg: restoreWarm('borg', () =>
        timed(
          'sh',
          ['-c', `mkdir -p ${out}/borg && cd ${out}/borg && borg extract --sparse ${repos.borg}::incr`],
          borgEnv,
        ),
      ),
    };
    const restoreCpu = cpuSince();
    const usedBytes = JSON.parse(run(cli, ['points', '--repo', repos.diskline, '--json'])).at(-1)
      .usedBytes as number;

    const row = (name: string, a: string, b: string, c: string) =>
      `${name.padEnd(34)}${a.padStart(14)}${b.padStart(14)}${c.padStart(14)}\n`;
    let table = row('', 'diskline', 'restic', 'borg');
    table += row('full backup', secs(full.diskline), secs(full.restic), secs(full.borg));
    table += row(
      '  cpu seconds (user+sys)',
      secs(fullCpu.diskline),
      secs(fullCpu.restic),
      secs(fullCpu.borg),
    );
    table += row(
      'repository after full',
      fmt(fullSizes.diskline),
      fmt(fullSizes.restic),
      fmt(fullSizes.borg),
    );
    table += row(
      'incremental backup (~5% changed)',
      secs(incremental.diskline),
      secs(incremental.restic),
      secs(incremental.borg),
    );
    table += row(
      '  cpu seconds (user+sys)',
      secs(incrCpu.diskline),
      secs(incrCpu.restic),
      secs(incrCpu.borg),
    );
    table += row(
      'repository after incremental',
      fmt(incrSizes.diskline),
      fmt(incrSizes.restic),
      fmt(incrSizes.borg),
    );
    table += row(
      'restore latest',
      secs(restoreTimes.diskline),
      secs(restoreTimes.restic),
      secs(restoreTimes.borg),
    );
    table += row(
      '  cpu seconds (user+sys)',
      secs(restoreCpu.diskline),
      secs(restoreCpu.restic),
      secs(restoreCpu.borg),
    );
    table += row(
      'restore throughput (disk bytes/s)',
      `${fmt(size / restoreTimes.diskline)}/s`,
      `${fmt(size / restoreTimes.restic)}/s`,
      `${fmt(size / restoreTimes.borg)}/s`,
    );
    table += row('incremental, tracked changes (*)', secs(tracked.seconds), '-', '-');
    table += row('  cpu seconds (user+sys)', secs(tracked.cpuSeconds), '-', '-');
    process.stdout.write(table);
    process.stdout.write(
      `(*) what the tap makes possible: the changed ranges given (here found by comparing the image with its copy\n` +
        `    from before the change, outside the timing), only those units read; ${fmt(tracked.changedBytes)} changed, ` +
        `${fmt(tracked.readBytes)} read, ${fmt(tracked.storedBytes)} stored\n`,
    );
    process.stdout.write(
      `\nratios (peer / diskline; >1 means diskline is better)\n` +
        `  full backup time:        restic ${(full.restic / full.diskline).toFixed(2)}x, borg ${(full.borg / full.diskline).toFixed(2)}x\n` +
        `  incremental time:        restic ${(incremental.restic / incremental.diskline).toFixed(2)}x, borg ${(incremental.borg / incremental.diskline).toFixed(2)}x\n` +
        `  repository size (full):  restic ${(fullSizes.restic / fullSizes.diskline).toFixed(3)}x, borg ${(fullSizes.borg / fullSizes.diskline).toFixed(3)}x\n` +
        `  repository size (incr):  restic ${(incrSizes.restic / incrSizes.diskline).toFixed(3)}x, borg ${(incrSizes.borg / incrSizes.diskline).toFixed(3)}x\n` +
        `  full backup cpu:         restic ${(fullCpu.restic / fullCpu.diskline).toFixed(2)}x, borg ${(fullCpu.borg / fullCpu.diskline).toFixed(2)}x\n` +
        `  incremental cpu:         restic ${(incrCpu.restic / incrCpu.diskline).toFixed(2)}x, borg ${(incrCpu.borg / incrCpu.diskline).toFixed(2)}x\n` +
        `  restore time:            restic ${(restoreTimes.restic / restoreTimes.diskline).toFixed(2)}x, borg ${(restoreTimes.borg / restoreTimes.diskline).toFixed(2)}x\n` +
        `diskline used bytes (what it read and restored): ${fmt(usedBytes)} of ${fmt(size)}; ` +
        `restore of used bytes: ${fmt(usedBytes / restoreTimes.diskline)}/s\n`,
    );
  } finally {
    spawnSync('umount', [mnt]);
    await rm(out, { recursive: true, force: true });
    if (!values.keep) await rm(work, { recursive: true, force: true });
    else process.stdout.write(`kept ${work}\n`);
  }
}

await main();
