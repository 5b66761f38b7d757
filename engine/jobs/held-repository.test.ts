// The command line and the engine's API on a repository removed, moved or replaced while a job runs: the command
// exits non-zero and the job fails, each naming what happened; nothing is recreated at the old name and the
// repository put in its place is untouched. The test holds the writer lock, so the job cannot commit before
// the change; it makes the change once the job holds the repository open.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { startTestDaemon } from '../api/testing/daemon.ts';
import { StateStore } from '../config/state.ts';
import {
  changedRepository,
  expectedMessage,
  holdsDirectory,
  holdWriterLock,
  OPTIONS,
  until,
} from '../repository/testing/changed-repository.ts';
import { cliPath } from '../repository/testing/run-cli.ts';
import { defaultRunners } from './runners.ts';

const dir = await mkdtemp(join(tmpdir(), 'diskline-held-jobs-'));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

for (const verb of ['backup', 'prune'] as const) {
  for (const how of ['removed', 'moved', 'replaced'] as const) {
    test(`diskline ${verb} exits non-zero naming what happened when its repository is ${how} meanwhile`, async () => {
      const s = await changedRepository(dir, `cli-${verb}-${how}`, how, 2);
      await s.repo.close();
      const release = await holdWriterLock(s.path);
      const args =
        verb === 'backup'
          ? ['backup', s.image, '--repo', s.path]
          : ['prune', '--repo', s.path, '--keep-last', '1'];
      const child = spawn(cliPath, args, {
        env: {
          ...process.env,
          DISKLINE_PASSWORD: OPTIONS.password,
          DISKLINE_SOCKET: join(dir, 'no-daemon.sock'),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
      });
      const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
      await until(() => holdsDirectory(child.pid!, s.path), `diskline ${verb} opened the repository`);
      // Stopped while the change is made: to the command, the repository goes at one instant (as by a rename).
      child.kill('SIGSTOP');
      s.change();
      child.kill('SIGCONT');
      await release(how === 'removed' ? s.path : `${s.path}-moved`);
      const status = await exited;
      assert.notEqual(status, 0, stderr);
      assert.match(stderr, expectedMessage[how]);
      await s.check();
    });
  }
}

for (const how of ['removed', 'moved', 'replaced'] as const) {
  test(`a backup job of the engine fails naming what happened when its repository is ${how} meanwhile`, async () => {
    const s = await changedRepository(dir, `daemon-${how}`, how);
    await s.repo.close();
    const state = await StateStore.open(join(dir, `daemon-${how}-state`));
    const daemon = await startTestDaemon(defaultRunners(state));
    const saved = process.env.DISKLINE_PASSWORD;
    process.env.DISKLINE_PASSWORD = OPTIONS.password;
    try {
      const release = await holdWriterLock(s.path);
      const client = await daemon.connect();
      const job = await client.call('backup.start', { source: s.image, repo: s.path });
      await until(() => holdsDirectory(process.pid, s.path), 'the backup job opened the repository');
      s.change();
      await release(how === 'removed' ? s.path : `${s.path}-moved`);
      const ended = await daemon.engine.jobs.waitFor(job.id);
      assert.equal(ended.state, 'failed');
      assert.match(ended.error ?? '', expectedMessage[how]);
      await s.check();
    } finally {
      if (saved === undefined) delete process.env.DISKLINE_PASSWORD;
      else process.env.DISKLINE_PASSWORD = saved;
      await daemon.close();
    }
  });
}
