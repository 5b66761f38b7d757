import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { jobEnded } from '../testing/job-end.ts';
import { startDaemonProcess } from '../testing/listening-daemon.ts';
import { SocketClient } from './client.ts';

const cli = fileURLToPath(new URL('../../bin/diskline', import.meta.url));
const IMAGE_BYTES = 64 << 20;

let dir: string;
let env: NodeJS.ProcessEnv;
let socket: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-restart-'));
  socket = join(dir, 'engine.sock');
  env = {
    ...process.env,
    DISKLINE_STATE_DIR: join(dir, 'state'),
    DISKLINE_SOCKET: socket,
    DISKLINE_PASSWORD: 'drill passphrase',
    // A checkpoint after every pack, so the interrupted backup leaves one to resume from.
    DISKLINE_CHECKPOINT_MS: '0',
  };
  // Incompressible data, so the backup takes long enough to be interrupted.
  const image = await open(join(dir, 'disk.img'), 'w');
  for (let offset = 0; offset < IMAGE_BYTES; offset += 8 << 20)
    await image.write(randomBytes(8 << 20), 0, 8 << 20, offset);
  await image.close();
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts `diskline daemon` and resolves with a connected client once it answers. */
async function startDaemon(): Promise<{ daemon: ChildProcess; client: SocketClient }> {
  const { child } = await startDaemonProcess(cli, ['daemon'], env);
  return { daemon: child, client: await SocketClient.connect(socket) };
}

async function stopped(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}

test('a daemon killed during a backup reports it interrupted after restart; the repository verifies and the next backup resumes', async () => {
  const repo = join(dir, 'repo');
  let { daemon, client } = await startDaemon();
  try {
    await client.call('repo.init', { repo });
    const backup = await client.call('backup.start', { source: join(dir, 'disk.img'), repo });
    // Kill as soon as the backup has committed its first checkpoint (an incomplete point).
    while ((await readdir(join(repo, 'points')).catch(() => [])).length === 0) await sleep(20);
    await client.close();
    await stopped(daemon, 'SIGKILL');

    ({ daemon, client } = await startDaemon());
    const interrupted = (await client.call('jobs.list', {})).find((job) => job.id === backup.id);
    assert.equal(interrupted?.state, 'interrupted');
    assert.match(
      interrupted?.error ?? '',
      /^The engine stopped while this job was running \(restart or crash\); run it again\./,
    );
    assert.match(interrupted?.error ?? '', /resumes from its last checkpoint\.$/);

    const verify = await client.call('verify.start', { repo, readData: true });
    const verified = await jobEnded(client, verify.id);
    assert.equal(verified.state, 'succeeded', verified.error ?? '');

    const again = await client.call('backup.start', { source: join(dir, 'disk.img'), repo });
    const finished = await jobEnded(client, again.id);
    assert.equal(finished.state, 'succeeded', finished.error ?? '');
    const points = await client.call('points.list', { repo });
    const complete = points.filter((point) => point.complete);
    assert.equal(complete.length, 1);
    assert.equal(complete[0]!.sourceSize, IMAGE_BYTES);
    assert.equal(finished.result?.point, complete[0]!.id);
    assert.ok(finished.result?.resumed, 'the backup resumed the interrupted one');
  } finally {
    await client.close();
    await stopped(daemon, 'SIGTERM');
  }
  assert.equal(existsSync(socket), false, 'a stopped daemon removes its socket');
});
