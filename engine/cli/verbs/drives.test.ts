import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Drive } from '../../../protocol/model.ts';
import { ControlledWork, controlledRunners, startTestDaemon } from '../../api/testing/daemon.ts';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../../bin/diskline', import.meta.url));

test('diskline drives --json without a daemon lists the disks with the system disk flagged', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-drives-'));
  try {
    const { stdout } = await run(cli, ['drives', '--json'], {
      env: {
        ...process.env,
        DISKLINE_SOCKET: join(dir, 'no-daemon.sock'),
        DISKLINE_STATE_DIR: join(dir, 'state'),
      },
    });
    const drives = JSON.parse(stdout) as Drive[];
    assert.ok(Array.isArray(drives));
    for (const drive of drives) assert.equal(typeof drive.isSystem, 'boolean');
    const root = drives.find((drive) => drive.mountpoints.includes('/'));
    if (root) assert.equal(root.isSystem, true);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('diskline drives asks the daemon when its socket answers (and shows the images registered there)', async () => {
  const daemon = await startTestDaemon(controlledRunners(new ControlledWork()));
  try {
    const image = join(daemon.dir, 'only-the-daemon-knows.img');
    await writeFile(image, '');
    await truncate(image, 3 << 20);
    daemon.engine.state.config.images.push(image);
    const env = {
      ...process.env,
      DISKLINE_SOCKET: daemon.socket,
      DISKLINE_STATE_DIR: join(daemon.dir, 'other'),
    };
    const json = JSON.parse((await run(cli, ['drives', '--json'], { env })).stdout) as Drive[];
    assert.equal(json.find((drive) => drive.device === image)?.size, 3 << 20);
    const text = (await run(cli, ['drives'], { env })).stdout;
    assert.match(text, new RegExp(`^${image}  3\\.0 MiB  Image file only-the-daemon-knows\\.img$`, 'm'));
  } finally {
    await daemon.close();
  }
});
