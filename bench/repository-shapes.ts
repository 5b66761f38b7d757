// Diskline's repository against restic on disks of every shape the property test generates (all zero, one
// repeated unit, distinct random units, distinct extremely compressible units, alternating runs): for each, the
// repository's size and the backup's speed, both tools backing up the same image file into a fresh encrypted
// repository (restic: repository v2, compression auto). Prints sizes, times and ratios measured in this one run
// on this machine.
//
//   npx node bench/repository-shapes.ts [--size 1G] [--shapes zero,repeated,…] [--keep]

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SHAPE_KINDS, ShapeGenerator } from '../engine/repository/testing/disk-shapes.ts';
import { parseByteSize } from '../protocol/byte-size.ts';
import { disklineCli as cli, duBytes, runTool, timedTool } from './tool-runs.ts';

const PASSWORD = 'bench passphrase';
const UNIT = 64 << 10;
const MiB = 1 << 20;

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1G' },
    shapes: { type: 'string', default: SHAPE_KINDS.join(',') },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
  strict: false,
});
if (values.help) {
  process.stdout.write(
    'usage: npx node bench/repository-shapes.ts [--size 1G] [--shapes zero,repeated,…] [--keep]\n' +
      '  --size  size of each generated disk image (e.g. 256M, 1G, 9G), plus a tail shorter than a unit\n' +
      `  --shapes  which shapes, comma-separated (default: all of ${SHAPE_KINDS.join(', ')})\n` +
      '  --keep  keep the work directory (repositories) and print its path\n' +
      'needs restic\n',
  );
  process.exit(0);
}
const sizeBytes = parseByteSize(String(values.size));
if (sizeBytes === null || sizeBytes < 16 * MiB)
  throw new Error(`--size ${values.size}: expected at least 16M`);
const shapes = String(values.shapes).split(',');
for (const shape of shapes)
  if (!(SHAPE_KINDS as readonly string[]).includes(shape))
    throw new Error(`--shapes: ${shape} is not one of ${SHAPE_KINDS.join(', ')}`);
// A tail shorter than a unit: the disk ends inside one.
const size = Math.floor(sizeBytes / UNIT) * UNIT + 1234;

const env = { DISKLINE_PASSWORD: PASSWORD, RESTIC_PASSWORD: PASSWORD };

const run = (command: string, args: string[], extraEnv: Record<string, string> = {}) =>
  runTool(command, args, { ...env, ...extraEnv });
const timed = (command: string, args: string[], extraEnv: Record<string, string> = {}) =>
  timedTool(command, args, { ...env, ...extraEnv });

const fmt = (bytes: number) =>
  bytes < MiB ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / MiB).toFixed(1)} MiB`;
const speed = (seconds: number) => `${(size / MiB / seconds).toFixed(0)} MiB/s`;

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'diskline-bench-shapes-'));
  const rows: string[] = [];
  const row = (cells: string[]) =>
    `${cells[0]!.padEnd(24)}${cells
      .slice(1)
      .map((cell) => cell.padStart(13))
      .join('')}\n`;
  rows.push(
    row(['shape', 'diskline', 'restic', 'size ratio', 'diskline', 'restic', 'speed ratio', 'cpu ratio']),
  );
  rows.push(row(['', 'repository', 'repository', 'restic/dl', 'backup', 'backup', 'dl/restic', 'restic/dl']));
  try {
    for (const kind of SHAPE_KINDS.filter((shape) => shapes.includes(shape))) {
      const image = join(work, `${kind}.img`);
      await new ShapeGenerator({ kind, seed: 1, size, unitSize: UNIT, maxRunUnits: 16 }).writeImage(image);
      const repos = { diskline: join(work, `${kind}-diskline`), restic: join(work, `${kind}-restic`) };
      const resticEnv = { RESTIC_CACHE_DIR: join(work, 'restic-cache') };
      run(cli, ['init', '--repo', repos.diskline]);
      run('restic', ['init', '--repository-version', '2', '-r', repos.restic, '-q'], resticEnv);
      // Both read the image from the page cache.
      run('sh', ['-c', `cat ${image} > /dev/null`]);
      const diskline = timed(cli, ['backup', image, '--repo', repos.diskline, '--json']);
      run('sh', ['-c', `cat ${image} > /dev/null`]);
      const restic = timed(
        'restic',
        ['-r', repos.restic, 'backup', '--compression', 'auto', '-q', image],
        resticEnv,
      );
      const sizes = { diskline: duBytes(repos.diskline), restic: duBytes(repos.restic) };
      rows.push(
        row([
          kind,
          fmt(sizes.diskline),
          fmt(sizes.restic),
          `${(sizes.restic / sizes.diskline).toFixed(2)}x`,
          speed(diskline.seconds),
          speed(restic.seconds),
          `${(restic.seconds / diskline.seconds).toFixed(2)}x`,
          `${(restic.cpuSeconds / diskline.cpuSeconds).toFixed(2)}x`,
        ]),
      );
      process.stdout.write(rows.at(-1)!);
      await rm(image, { force: true });
      if (!values.keep) {
        await rm(repos.diskline, { recursive: true, force: true });
        await rm(repos.restic, { recursive: true, force: true });
      }
    }
    process.stdout.write(
      `\nimages of ${fmt(size)} (64 KiB units and a 1234-byte tail), each backed up once into a fresh encrypted ` +
        `repository; speed = image bytes / wall seconds, ratios >1 mean diskline is better\n\n${rows.join('')}`,
    );
  } finally {
    if (!values.keep) await rm(work, { recursive: true, force: true });
    else process.stdout.write(`kept ${work}\n`);
  }
}

await main();
