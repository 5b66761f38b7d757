// `diskline attach --foreground`: prints the loop device, serves it, and Ctrl-C (SIGINT) detaches cleanly.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { nativeHelperAvailable } from '../../native/index.ts';
import { tapUnavailableReason } from '../../tap/system-state.ts';

const run = promisify(execFile);
const skipReason = !nativeHelperAvailable()
  ? 'native helper not built (npm run build)'
  : tapUnavailableReason();
const cli = fileURLToPath(new URL('../main.ts', import.meta.url));

test('attach --foreground serves the image as a loop device until SIGINT, then detaches', {
  skip: skipReason ?? false,
  timeout: 60_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-attach-verb-'));
  try {
    const image = join(dir, 'raw.img');
    await run('truncate', ['-s', '8M', image]);
    const child = spawn(process.execPath, [cli, 'attach', image, '--foreground', '--json'], {
      env: { ...process.env, DISKLINE_STATE_DIR: join(dir, 'state') },
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const attached = await new Promise<{ source: string; loopDevice: string }>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (chunk) => {
        out += chunk;
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0] as string));
      });
      child.on('exit', (code) => reject(new Error(`attach exited ${code}: ${stderr}`)));
    });
    assert.equal(attached.source, image);
    const device = await open(attached.loopDevice, 'r+');
    await device.write(Buffer.from('written through the tap'), 0, 23, 4096);
    await device.datasync();
    await device.close();
    child.kill('SIGINT');
    assert.equal(await exited, 0, stderr);
    const data = await readFile(image);
    assert.equal(data.subarray(4096, 4096 + 23).toString(), 'written through the tap');
    const { stdout } = await run('losetup', ['-a']);
    assert.doesNotMatch(stdout, new RegExp(`${attached.loopDevice}:`));
    const record = JSON.parse(
      await readFile(
        join(
          dir,
          'state',
          'tracking',
          (await run('ls', [join(dir, 'state', 'tracking')])).stdout
            .split('\n')
            .find((f) => f.endsWith('.json')) as string,
        ),
        'utf8',
      ),
    );
    assert.equal(record.state, 'clean');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
