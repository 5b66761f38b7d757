import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Plan } from '../../../protocol/model.ts';

const execute = promisify(execFile);
const cli = fileURLToPath(new URL('../../../bin/diskline', import.meta.url));

async function diskline(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execute(cli, args, { env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

test('diskline schedule add, list, pause and remove a plan, with exit code 2 for a bad schedule', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-schedule-cli-'));
  const env = {
    ...process.env,
    DISKLINE_SOCKET: join(dir, 'none.sock'),
    DISKLINE_STATE_DIR: join(dir, 'state'),
  };
  try {
    await writeFile(join(dir, 'disk.img'), Buffer.alloc(4096));
    const added = await diskline(
      [
        'schedule',
        'add',
        '--name',
        'Nightly',
        '--source',
        join(dir, 'disk.img'),
        '--repo',
        join(dir, 'repo'),
        '--at',
        'daily 02:30',
        '--keep-daily',
        '7',
        '--json',
      ],
      env,
    );
    assert.equal(added.code, 0, added.stderr);
    const plan = JSON.parse(added.stdout) as Plan;
    assert.equal(plan.schedule, 'daily 02:30');
    assert.deepEqual(plan.retention, { keepDaily: 7 });
    assert.match(plan.nextRun ?? '', /T\d\d:30:00/);

    const listed = JSON.parse((await diskline(['schedule', 'list', '--json'], env)).stdout) as Plan[];
    assert.deepEqual(
      listed.map((entry) => [entry.name, entry.repo]),
      [['Nightly', join(dir, 'repo')]],
    );
    assert.equal((await diskline(['schedule', 'pause'], env)).stdout, 'Schedules paused.\n');
    assert.equal(
      (JSON.parse((await diskline(['schedule', 'list', '--json'], env)).stdout) as Plan[])[0]!.nextRun,
      null,
    );
    assert.equal((await diskline(['schedule', 'resume'], env)).code, 0);

    const bad = await diskline(
      [
        'schedule',
        'add',
        '--name',
        'x',
        '--source',
        join(dir, 'disk.img'),
        '--repo',
        join(dir, 'repo'),
        '--at',
        'daily 25:00',
      ],
      env,
    );
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /'25:00' is not a time of day/);

    const removed = await diskline(['schedule', 'remove', 'Nightly'], env);
    assert.equal(removed.code, 0);
    assert.equal(removed.stdout, `Removed plan Nightly; its restore points stay in ${join(dir, 'repo')}.\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
