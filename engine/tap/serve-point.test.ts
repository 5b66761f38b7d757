// `diskline mount`: a restore point of an ext4 image, mounted read-only from the repository through the tap,
// shows the same files; `umount` ends the command cleanly (no loop device or FUSE mount left).
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { nativeHelperAvailable } from '../native/index.ts';
import { tapUnavailableReason } from './system-state.ts';

const run = promisify(execFile);
const skipReason = !nativeHelperAvailable()
  ? 'native helper not built (npm run build)'
  : tapUnavailableReason();
const cli = fileURLToPath(new URL('../cli/main.ts', import.meta.url));

test('diskline mount serves a point read-only from the repository and umount ends it', {
  skip: skipReason ?? false,
  timeout: 90_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-mount-'));
  const env = { ...process.env, DISKLINE_PASSWORD: 'mount test' };
  const mnt = join(dir, 'mnt');
  try {
    const image = join(dir, 'disk.img');
    await run('truncate', ['-s', '48M', image]);
    await run('mkfs.ext4', ['-q', '-F', image]);
    await mkdir(mnt);
    await run('mount', ['-o', 'loop', image, mnt]);
    const content = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < content.length; i += 4) content.writeUInt32LE((i * 2654435761) >>> 0, i);
    await writeFile(join(mnt, 'data.bin'), content);
    await writeFile(join(mnt, 'hello.txt'), 'hello from a restore point\n');
    await run('umount', [mnt]);

    const repo = join(dir, 'repo');
    await run(process.execPath, [cli, 'init', '--repo', repo], { env });
    await run(process.execPath, [cli, 'backup', image, '--repo', repo], { env });

    const mount = spawn(process.execPath, [cli, 'mount', 'latest', '--repo', repo, mnt, '--json'], { env });
    let stderr = '';
    mount.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => mount.on('exit', resolve));
    const summary = await new Promise<{ loopDevice: string; mounts: Array<{ dir: string; type: string }> }>(
      (resolve, reject) => {
        let out = '';
        mount.stdout.on('data', (chunk) => {
          out += chunk;
          if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0] as string));
        });
        mount.on('exit', (code) => reject(new Error(`mount exited ${code}: ${stderr}`)));
      },
    );
    assert.deepEqual(summary.mounts, [{ dir: mnt, type: 'ext4' }]);
    assert.equal(await readFile(join(mnt, 'hello.txt'), 'utf8'), 'hello from a restore point\n');
    assert.ok((await readFile(join(mnt, 'data.bin'))).equals(content));
    await assert.rejects(writeFile(join(mnt, 'new.txt'), 'x'), { code: 'EROFS' });
    await run('umount', [mnt]);
    assert.equal(await exited, 0, stderr);
    const { stdout } = await run('losetup', ['-a']);
    assert.doesNotMatch(stdout, new RegExp(`${summary.loopDevice}:`));
    assert.doesNotMatch(await readFile('/proc/self/mountinfo', 'utf8'), /diskline-point-/);
  } finally {
    await run('umount', [mnt]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
});
