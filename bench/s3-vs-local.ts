// Diskline's S3 backend against its local one and against restic, on the same ext4 image and the same real S3
// store (a one-node Ceph radosgw on loopback, started by this bench): full backup time to a local directory and
// to the store, restic's backup to the same store, restore from the store, and the requests each tool sent per
// GiB it stored (the store's own count: a paid store bills requests). Prints figures and ratios of this one run.
//
//   npx node bench/s3-vs-local.ts [--size 4G] [--keep]      (needs root to loop-mount the image; Ceph and restic)

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { S3Backend } from '../engine/backend/s3/backend.ts';
import type { S3Credentials } from '../engine/backend/s3/signer.ts';
import { s3StoreUnavailableReason, startS3Store } from '../engine/testing/s3-store.ts';
import { parseByteSize } from '../protocol/byte-size.ts';
import { fillFiles } from './fixtures/mixed-files.ts';
import { disklineCli as cli, runTool, timedTool } from './tool-runs.ts';

const PASSWORD = 'bench passphrase for the store';
const MiB = 1 << 20;
const GiB = 1 << 30;

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '4G' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
  strict: false,
});
if (values.help) {
  process.stdout.write(
    'usage: npx node bench/s3-vs-local.ts [--size 4G] [--keep]\n' +
      '  --size  size of the ext4 image (~60% of it filled with files)\n' +
      '  --keep  keep the work directory and print its path\n' +
      'needs root (loop mount), Ceph (ceph-mon, ceph-osd, radosgw) and restic\n',
  );
  process.exit(0);
}
const sizeBytes = parseByteSize(String(values.size));
if (sizeBytes === null || sizeBytes < 64 * MiB) throw new Error(`--size ${values.size}: at least 64M`);
const size = Math.floor(sizeBytes / MiB) * MiB;

const fmt = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
const secs = (s: number) => `${s.toFixed(2)} s`;

/** Bytes of every object under a location (one listing). */
async function storedBytes(location: string, credentials: S3Credentials): Promise<number> {
  const objects = await new S3Backend(location, { credentials }).listSizes('');
  return objects.reduce((sum, object) => sum + object.size, 0);
}

async function main(): Promise<void> {
  const unavailable = s3StoreUnavailableReason();
  if (unavailable) throw new Error(`no S3 store can run here: ${unavailable}`);
  if (process.getuid?.() !== 0) throw new Error('needs root to loop-mount the ext4 image');
  const work = await mkdtemp(join(tmpdir(), 'diskline-bench-s3-'));
  const image = join(work, 'disk.img');
  const mnt = join(work, 'mnt');
  await mkdir(mnt);
  const out = existsSync('/dev/shm')
    ? await mkdtemp('/dev/shm/diskline-bench-s3-restore-')
    : join(work, 'out');
  await mkdir(out, { recursive: true });
  const store = await startS3Store();
  try {
    runTool('truncate', ['-s', String(size), image]);
    runTool('mkfs.ext4', ['-q', '-F', image]);
    runTool('mount', ['-o', 'loop', image, mnt]);
    await fillFiles(mnt, Math.floor(size * 0.6), 'full');
    runTool('umount', [mnt]);
    runTool('sync', []);
    runTool('sh', ['-c', `cat ${image} > /dev/null`]);
    process.stdout.write(`ext4 image of ${fmt(size)}, ~60% filled (half random, half text-like files)\n`);

    const env = {
      DISKLINE_PASSWORD: PASSWORD,
      RESTIC_PASSWORD: PASSWORD,
      AWS_ACCESS_KEY_ID: store.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: store.credentials.secretAccessKey,
      RESTIC_CACHE_DIR: join(work, 'restic-cache'),
    };
    const local = join(work, 'local-repo');
    const remote = store.location('diskline-bench', 'repo');
    const resticRemote = `s3:${store.endpoint}/restic-bench`;

    runTool(cli, ['init', '--repo', local], env);
    const localBackup = timedTool(cli, ['backup', image, '--repo', local, '--json'], env);
    await rm(local, { recursive: true, force: true });
    // Figures as they come, so a run that fails late still tells what it measured.
    const note = (text: string) => process.stdout.write(`  ${text}\n`);
    note(`diskline backup to a local directory: ${secs(localBackup.seconds)}`);

    runTool(cli, ['init', '--repo', remote], env);
    let mark = await store.requestsServed();
    const s3Backup = timedTool(cli, ['backup', image, '--repo', remote, '--json'], env);
    const s3Requests = (await store.requestsServed()) - mark;
    const s3Stored = await storedBytes(remote, store.credentials);
    const usedBytes = JSON.parse(runTool(cli, ['points', '--repo', remote, '--json'], env)).at(-1)
      .usedBytes as number;
    note(`diskline backup to S3: ${secs(s3Backup.seconds)}, ${s3Requests} requests, ${fmt(s3Stored)} stored`);

    mark = await store.requestsServed();
    const s3Restore = timedTool(
      cli,
      ['restore', 'latest', '--repo', remote, '--to', join(out, 'diskline.img'), '--json'],
      env,
    );
    const restoreRequests = (await store.requestsServed()) - mark;
    runTool('cmp', [image, join(out, 'diskline.img')]);
    await rm(join(out, 'diskline.img'));
    note(`diskline restore from S3: ${secs(s3Restore.seconds)}, ${restoreRequests} requests`);
    // The store keeps objects in memory: Diskline's go before restic's come.
    const diskline = new S3Backend(remote, { credentials: store.credentials });
    for (const name of await diskline.list('')) await diskline.delete(name);

    runTool('restic', ['-r', resticRemote, 'init', '--repository-version', '2', '-q'], env);
    mark = await store.requestsServed();
    const resticBackup = timedTool(
      'restic',
      ['-r', resticRemote, 'backup', '--compression', 'auto', '-q', image],
      env,
    );
    const resticRequests = (await store.requestsServed()) - mark;
    note(`restic backup to S3: ${secs(resticBackup.seconds)}, ${resticRequests} requests`);
    const resticStored = await storedBytes(`s3:${store.endpoint}/restic-bench`, store.credentials);
    mark = await store.requestsServed();
    const resticRestore = timedTool(
      'restic',
      ['-r', resticRemote, 'restore', 'latest', '--target', out, '-q'],
      env,
    );
    const resticRestoreRequests = (await store.requestsServed()) - mark;

    const row = (name: string, ...cells: string[]) =>
      `${name.padEnd(36)}${cells.map((c) => c.padStart(16)).join('')}\n`;
    let table = row('', 'diskline local', 'diskline s3', 'restic s3');
    table += row(
      'full backup',
      secs(localBackup.seconds),
      secs(s3Backup.seconds),
      secs(resticBackup.seconds),
    );
    table += row(
      '  cpu seconds (user+sys)',
      secs(localBackup.cpuSeconds),
      secs(s3Backup.cpuSeconds),
      secs(resticBackup.cpuSeconds),
    );
    table += row(
      '  image bytes/s',
      `${fmt(size / localBackup.seconds)}/s`,
      `${fmt(size / s3Backup.seconds)}/s`,
      `${fmt(size / resticBackup.seconds)}/s`,
    );
    table += row('stored in the bucket', '-', fmt(s3Stored), fmt(resticStored));
    table += row('backup requests', '-', String(s3Requests), String(resticRequests));
    table += row(
      '  per GiB stored',
      '-',
      (s3Requests / (s3Stored / GiB)).toFixed(1),
      (resticRequests / (resticStored / GiB)).toFixed(1),
    );
    table += row('restore latest', '-', secs(s3Restore.seconds), secs(resticRestore.seconds));
    table += row('  cpu seconds (user+sys)', '-', secs(s3Restore.cpuSeconds), secs(resticRestore.cpuSeconds));
    table += row(
      '  disk bytes/s',
      '-',
      `${fmt(size / s3Restore.seconds)}/s`,
      `${fmt(size / resticRestore.seconds)}/s`,
    );
    table += row('  used bytes/s', '-', `${fmt(usedBytes / s3Restore.seconds)}/s`, '-');
    table += row('  requests', '-', String(restoreRequests), String(resticRestoreRequests));
    process.stdout.write(`\n${table}`);
    process.stdout.write(
      `\nratios\n` +
        `  diskline to S3 / diskline local, backup speed: ${((localBackup.seconds / s3Backup.seconds) * 100).toFixed(0)}% (goal: at least 70%)\n` +
        `  restic to S3 / diskline to S3, backup time:    ${(resticBackup.seconds / s3Backup.seconds).toFixed(2)}x (>1: diskline faster)\n` +
        `  requests per GiB stored, restic / diskline:    ${(resticRequests / (resticStored / GiB) / (s3Requests / (s3Stored / GiB))).toFixed(2)}x\n` +
        `  restore from S3: ${fmt(size / s3Restore.seconds)}/s of disk (goal: 300 MiB/s), restic ${(resticRestore.seconds / s3Restore.seconds).toFixed(2)}x diskline's time\n`,
    );
  } finally {
    spawnSync('umount', [mnt]);
    await store.stop();
    await rm(out, { recursive: true, force: true });
    if (!values.keep) await rm(work, { recursive: true, force: true });
    else process.stdout.write(`kept ${work}\n`);
  }
}

await main();
