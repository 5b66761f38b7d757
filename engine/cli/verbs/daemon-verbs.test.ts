// backup/restore/verify through a real `diskline daemon`: the point appears in `points`, restores to equal
// bytes, verifies; and a backup of a volume attached in the daemon is taken through its session ('frozen').
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SocketClient } from '../../api/client.ts';
import { nativeHelperAvailable } from '../../native/index.ts';
import { tapUnavailableReason } from '../../tap/system-state.ts';
import { startDaemonProcess } from '../../testing/listening-daemon.ts';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../main.ts', import.meta.url));

let dir: string;
let env: NodeJS.ProcessEnv;
let daemon: ChildProcess | null = null;

function diskline(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, ...args], { env }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function sha256(path: string, length?: number): Promise<string> {
  const data = await readFile(path);
  return createHash('sha256')
    .update(length === undefined ? data : data.subarray(0, length))
    .digest('hex');
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-daemon-verbs-'));
  env = {
    ...process.env,
    DISKLINE_STATE_DIR: join(dir, 'state'),
    DISKLINE_SOCKET: join(dir, 'engine.sock'),
    DISKLINE_PASSWORD: 'through the daemon',
  };
  const image = await open(join(dir, 'disk.img'), 'w');
  await image.write(randomBytes(4 << 20), 0, 4 << 20, 0);
  await image.write(randomBytes(1 << 20), 0, 1 << 20, 12 << 20);
  await image.truncate(16 << 20);
  await image.close();
  const init = await diskline(['init', '--repo', join(dir, 'repo')]);
  assert.equal(init.code, 0, init.stderr);
  daemon = (await startDaemonProcess(process.execPath, [cli, 'daemon'], env)).child;
});

after(async () => {
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((resolve) => daemon?.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
  }
  await rm(dir, { recursive: true, force: true });
});

test('backup, points, restore, verify and prune go through the daemon and restore equal bytes', {
  timeout: 300_000,
}, async () => {
  const repo = join(dir, 'repo');
  // --no-resume reaches the daemon too (it was refused there).
  const backup = await diskline(['backup', join(dir, 'disk.img'), '--repo', repo, '--json', '--no-resume']);
  assert.equal(backup.code, 0, backup.stderr);
  const made = JSON.parse(backup.stdout) as { point: { id: string }; stats: { usedBytes: number } };
  assert.match(made.point.id, /^[0-9a-f]+$/);
  assert.ok(made.stats.usedBytes > 0);
  // The daemon took it: its job list names this backup.
  const client = await SocketClient.connect(env.DISKLINE_SOCKET as string);
  try {
    const jobs = await client.call('jobs.list', {});
    assert.ok(jobs.some((job) => job.kind === 'backup' && job.result?.point === made.point.id));
  } finally {
    await client.close();
  }
  const points = await diskline(['points', '--repo', repo, '--json']);
  assert.equal(points.code, 0, points.stderr);
  assert.ok((JSON.parse(points.stdout) as { id: string }[]).some((p) => p.id === made.point.id));

  const out = join(dir, 'restored.img');
  const restore = await diskline(['restore', made.point.id, '--repo', repo, '--to', out, '--json']);
  assert.equal(restore.code, 0, restore.stderr);
  const restored = JSON.parse(restore.stdout) as { point: string; target: string };
  assert.equal(restored.point, made.point.id);
  assert.equal(restored.target, out);
  assert.equal(await sha256(out, 16 << 20), await sha256(join(dir, 'disk.img')));

  const verify = await diskline(['verify', '--repo', repo, '--read-data', '--json']);
  assert.equal(verify.code, 0, verify.stderr);
  const report = JSON.parse(verify.stdout) as { ok: boolean; pointsChecked: number };
  assert.equal(report.ok, true);
  assert.equal(report.pointsChecked, 1);

  const prune = await diskline(['prune', '--repo', repo, '--keep-last', '1', '--dry-run', '--json']);
  assert.equal(prune.code, 0, prune.stderr);
  const pruned = JSON.parse(prune.stdout) as {
    dryRun: boolean;
    kept: { id: string; reasons: string[] }[];
    forgotten: string[];
  };
  assert.deepEqual(pruned.kept, [{ id: made.point.id, reasons: ['last'] }]);
  assert.deepEqual(pruned.forgotten, []);
  assert.equal(pruned.dryRun, true);

  const hooksWithoutDaemon = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      [cli, 'backup', join(dir, 'disk.img'), '--repo', repo, '--pre-hook', 'true'],
      { env: { ...env, DISKLINE_SOCKET: join(dir, 'no-daemon.sock') } },
      (error, _stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code) : 0, stderr }),
    );
  });
  assert.equal(hooksWithoutDaemon.code, 2);
  assert.match(hooksWithoutDaemon.stderr, /need a volume attached in the engine daemon/);
});

const attachSkip = !nativeHelperAvailable()
  ? 'native helper not built (npm run build)'
  : (tapUnavailableReason() ?? false);

test('backup of a volume attached in the daemon is frozen, with its hooks run', {
  skip: attachSkip,
  timeout: 300_000,
}, async () => {
  const repo = join(dir, 'repo');
  const image = join(dir, 'ext4.img');
  await run('truncate', ['-s', '32M', image]);
  await run('mkfs.ext4', ['-q', '-F', image]);
  const attach = await diskline(['attach', image, '--json']);
  assert.equal(attach.code, 0, attach.stderr);
  const { loopDevice } = JSON.parse(attach.stdout) as { loopDevice: string };
  const mountDir = join(dir, 'mnt');
  await mkdir(mountDir);
  let mounted = false;
  try {
    await run('mount', [loopDevice, mountDir]);
    mounted = true;
    await writeFile(join(mountDir, 'hello.txt'), 'written while mounted');
    const marker = join(dir, 'hooks.log');
    const backup = await diskline([
      'backup',
      image,
      '--repo',
      repo,
      '--json',
      '--pre-hook',
      `echo pre >> ${marker}`,
      '--post-hook',
      `echo post >> ${marker}`,
    ]);
    assert.equal(backup.code, 0, backup.stderr);
    const made = JSON.parse(backup.stdout) as { point: { id: string; consistency: string } };
    assert.equal(made.point.consistency, 'frozen');
    assert.equal(existsSync(marker) ? await readFile(marker, 'utf8') : '', 'pre\npost\n');
  } finally {
    if (mounted) await run('umount', [mountDir]);
    const detach = await diskline(['detach', image]);
    assert.equal(detach.code, 0, detach.stderr);
  }
});

const loopSkip =
  process.getuid?.() !== 0
    ? 'needs root for a loop device'
    : existsSync('/dev/loop-control')
      ? false
      : 'no loop devices';

test('restore to a device through the daemon needs --yes and prints the device; then writes equal bytes', {
  skip: loopSkip,
  timeout: 300_000,
}, async () => {
  const repo = join(dir, 'repo');
  const backing = join(dir, 'target.img');
  await run('truncate', ['-s', '16M', backing]);
  const device = (await run('losetup', ['-f', '--show', backing])).stdout.trim();
  try {
    const points = JSON.parse((await diskline(['points', '--repo', repo, '--json'])).stdout) as {
      id: string;
      source: string;
    }[];
    const first = points.find((p) => p.source === join(dir, 'disk.img'));
    assert.ok(first);
    const refused = await diskline(['restore', first.id, '--repo', repo, '--to', device]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, new RegExp(`target: .*${device}`));
    assert.match(refused.stderr, /add --yes/);
    const restore = await diskline(['restore', first.id, '--repo', repo, '--to', device, '--yes', '--json']);
    assert.equal(restore.code, 0, restore.stderr);
    assert.equal((JSON.parse(restore.stdout) as { target: string }).target, device);
    assert.equal(await sha256(device, 16 << 20), await sha256(join(dir, 'disk.img')));
  } finally {
    await run('losetup', ['-d', device]);
  }
});

test('Ctrl-C during a backup through the daemon cancels the job and exits 1', {
  timeout: 300_000,
}, async () => {
  const repo = join(dir, 'repo-cancel');
  const init = await diskline(['init', '--repo', repo]);
  assert.equal(init.code, 0, init.stderr);
  // Incompressible data, so the backup is still running when the signal comes.
  const big = join(dir, 'big.img');
  const file = await open(big, 'w');
  for (let offset = 0; offset < 64 << 20; offset += 8 << 20)
    await file.write(randomBytes(8 << 20), 0, 8 << 20, offset);
  await file.close();
  const watcher = await SocketClient.connect(env.DISKLINE_SOCKET as string);
  try {
    const running = new Promise<string>((resolve) => {
      watcher.on('job.updated', (job) => {
        if (job.kind === 'backup' && job.state === 'running' && job.title.includes(big)) resolve(job.id);
      });
    });
    const child = spawn(process.execPath, [cli, 'backup', big, '--repo', repo, '--json'], { env });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const jobId = await running;
    child.kill('SIGINT');
    const exitCode = await exited;
    assert.equal(exitCode, 1, stderr);
    assert.match(stderr, /cancelled/);
    const job = (await watcher.call('jobs.list', {})).find((entry) => entry.id === jobId);
    assert.equal(job?.state, 'cancelled');
  } finally {
    await watcher.close();
  }
});

test('verify through the daemon exits 4 and names the damage when a pack is corrupt', {
  timeout: 300_000,
}, async () => {
  const repo = join(dir, 'repo');
  const packs: string[] = [];
  for (const sub of await readdir(join(repo, 'packs'))) {
    for (const name of await readdir(join(repo, 'packs', sub))) packs.push(join(repo, 'packs', sub, name));
  }
  assert.ok(packs.length > 0);
  for (const pack of packs) {
    const handle = await open(pack, 'r+');
    const { size } = await handle.stat();
    await handle.write(randomBytes(64), 0, 64, Math.floor(size / 2));
    await handle.close();
  }
  const verify = await diskline(['verify', '--repo', repo, '--read-data', '--json']);
  assert.equal(verify.code, 4, verify.stderr);
  const report = JSON.parse(verify.stdout) as { ok: boolean; error: string };
  assert.equal(report.ok, false);
  assert.match(report.error, / is damaged: /);
});
