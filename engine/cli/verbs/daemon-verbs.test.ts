// backup/restore/verify/prune through a real `diskline daemon`: the point appears in `points`, restores to equal
// bytes, verifies; the same verbs without a daemon (an engine in the command) print the same --json shapes; a
// backup of a volume attached in the daemon — by its source or its loop device — is taken through its session
// ('frozen'); a mounted device without the tap is refused (exit 3) and nothing is written to the repository.
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
  assert.match(hooksWithoutDaemon.stderr, /is not attached in this engine; attach it/);
});

/** The shape of a JSON value: its keys and the types of their values, arrays by their first element. */
function shapeOf(value: unknown): unknown {
  if (Array.isArray(value)) return value.length ? [shapeOf(value[0])] : [];
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([key, item]) => [key, shapeOf(item)]),
    );
  }
  return value === null ? 'null' : typeof value;
}

/** Files under `root` with their sizes: what a refused command must leave unchanged. */
async function treeListing(root: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    found.push(entry.isFile() ? `${path} ${(await readFile(path)).length}` : path);
  }
  return found.sort();
}

test('backup, restore, verify and prune print the same --json with a daemon and with an engine in the command', {
  timeout: 120_000,
}, async () => {
  const source = join(dir, 'disk.img');
  const shapes: Record<string, unknown>[] = [];
  for (const way of ['daemon', 'in-process'] as const) {
    const wayEnv = way === 'daemon' ? env : { ...env, DISKLINE_SOCKET: join(dir, 'no-daemon.sock') };
    const repo = join(dir, `repo-shapes-${way}`);
    const cliRun = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, [cli, ...args], { env: wayEnv }, (error, stdout, stderr) =>
          resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    assert.equal((await cliRun(['init', '--repo', repo])).code, 0);
    const outputs: Record<string, unknown> = {};
    const backup = await cliRun(['backup', source, '--repo', repo, '--json']);
    assert.equal(backup.code, 0, backup.stderr);
    outputs.backup = JSON.parse(backup.stdout);
    const pointId = (outputs.backup as { point: { id: string } }).point.id;
    const target = join(dir, `restored-${way}.img`);
    const restore = await cliRun(['restore', 'latest', '--repo', repo, '--to', target, '--json']);
    assert.equal(restore.code, 0, restore.stderr);
    outputs.restore = JSON.parse(restore.stdout);
    assert.equal(await sha256(target, 16 << 20), await sha256(source), `${way}: restored bytes equal`);
    const verify = await cliRun(['verify', '--repo', repo, '--read-data', '--json']);
    assert.equal(verify.code, 0, verify.stderr);
    outputs.verify = JSON.parse(verify.stdout);
    const prune = await cliRun(['prune', '--repo', repo, '--keep-last', '1', '--json']);
    assert.equal(prune.code, 0, prune.stderr);
    outputs.prune = JSON.parse(prune.stdout);
    // Which engine ran the backup: only the daemon's job list has it.
    const watcher = await SocketClient.connect(env.DISKLINE_SOCKET as string);
    try {
      const jobs = await watcher.call('jobs.list', {});
      assert.equal(
        jobs.some((job) => job.result?.point === pointId),
        way === 'daemon',
        `${way}: the daemon's job list ${way === 'daemon' ? 'has' : 'does not have'} the backup`,
      );
    } finally {
      await watcher.close();
    }
    shapes.push(shapeOf(outputs) as Record<string, unknown>);
  }
  for (const verb of ['backup', 'restore', 'verify', 'prune']) {
    assert.deepEqual(shapes[1]![verb], shapes[0]![verb], `${verb} --json has one shape`);
  }
});

test('backup of a mounted device without the tap is refused with exit 3 and writes nothing; --allow-inconsistent records it', {
  skip:
    process.getuid?.() !== 0
      ? 'needs root for a loop device'
      : existsSync('/dev/loop-control')
        ? false
        : 'no loop devices',
  timeout: 120_000,
}, async () => {
  const image = join(dir, 'mounted.img');
  await run('truncate', ['-s', '32M', image]);
  await run('mkfs.ext4', ['-q', '-F', image]);
  const device = (await run('losetup', ['-f', '--show', image])).stdout.trim();
  const mountDir = join(dir, 'mnt-unprotected');
  await mkdir(mountDir);
  const repo = join(dir, 'repo-refused');
  assert.equal((await diskline(['init', '--repo', repo])).code, 0);
  const before = await treeListing(repo);
  let mounted = false;
  try {
    await run('mount', [device, mountDir]);
    mounted = true;
    await writeFile(join(mountDir, 'busy.txt'), 'in use');
    for (const way of ['daemon', 'in-process'] as const) {
      const wayEnv = way === 'daemon' ? env : { ...env, DISKLINE_SOCKET: join(dir, 'no-daemon.sock') };
      const refused = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          [cli, 'backup', device, '--repo', repo],
          { env: wayEnv },
          (error, _o, stderr) =>
            resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stderr }),
        );
      });
      assert.equal(refused.code, 3, `${way}: ${refused.stderr}`);
      assert.match(
        refused.stderr,
        new RegExp(`refusing to back up ${device}: it is in use \\(${device} is mounted on ${mountDir}`),
      );
      assert.match(refused.stderr, /unmount it .* or attach it .* add --allow-inconsistent/);
      assert.deepEqual(await treeListing(repo), before, `${way}: nothing was written to the repository`);
    }
    const forced = await diskline(['backup', device, '--repo', repo, '--allow-inconsistent', '--json']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(
      (JSON.parse(forced.stdout) as { point: { consistency: string } }).point.consistency,
      'crash-consistent',
    );
  } finally {
    if (mounted) await run('umount', [mountDir]);
    await run('losetup', ['-d', device]);
  }
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
    // The loop device `attach` printed is that volume: its backup goes through the session too.
    const byLoop = await diskline(['backup', loopDevice, '--repo', repo, '--json']);
    assert.equal(byLoop.code, 0, byLoop.stderr);
    const viaLoop = JSON.parse(byLoop.stdout) as { point: { consistency: string; source: string } };
    assert.equal(viaLoop.point.consistency, 'frozen');
    assert.equal(viaLoop.point.source, image);
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
  const report = JSON.parse(verify.stdout) as { ok: boolean; damagedPoints: { id: string }[] };
  assert.equal(report.ok, false);
  assert.ok(report.damagedPoints.length > 0);
  assert.match(verify.stderr, /damaged point\(s\)/);
});
