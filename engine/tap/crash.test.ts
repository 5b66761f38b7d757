// Processes dying around an attached volume. kill -9 of the engine hosting it: the tap helper keeps serving, a
// raw writer never sees an error, and the next engine adopts the same loop device with change tracking intact;
// while the helper lives, a second attach of the source is refused, by any engine. kill -9 of the helper itself:
// the loop device fails writes at once, every acknowledged write is in the image, and attaching again (the one
// command) clears what the helper left and serves the source anew, with tracking declared invalid.
// Needs root, /dev/fuse and loop devices.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { attachVolume, TapRefusedError } from './attach.ts';
import { helperPath } from './helper-channel.ts';
import { stopHelpersUnder } from './helper-registry.ts';
import { loopDevicesBackedBy, tapUnavailableReason } from './system-state.ts';

const run = promisify(execFile);
const skipReason = !existsSync(helperPath) ? 'tap helper not built (npm run build)' : tapUnavailableReason();
const attachModule = fileURLToPath(new URL('./attach.ts', import.meta.url));
const BLOCKS = 4096;

const hostScript = `
const { attachVolume } = await import(process.argv[1]);
const volume = await attachVolume(process.argv[2], { trackingDir: process.argv[3], runtimeDir: process.argv[4], partscan: false });
process.stdout.write(JSON.stringify({ loopDevice: volume.loopDevice }) + '\\n');
setInterval(() => {}, 1000);
`;

// Writes block n (stamped n + 1) with O_DSYNC, then says "n + 1"; on the first failure says "failed" and stops.
const writerScript = `
const fs = require('node:fs');
const fd = fs.openSync(process.argv[1], fs.constants.O_RDWR | fs.constants.O_DSYNC);
const buffer = Buffer.alloc(4096);
for (let block = 0; block < ${BLOCKS}; block++) {
  for (let i = 0; i < 4096; i += 4) buffer.writeUInt32LE(block + 1, i);
  try { fs.writeSync(fd, buffer, 0, 4096, block * 4096); } catch { process.stdout.write('failed\\n'); break; }
  process.stdout.write(block + 1 + '\\n');
}
`;

/** A raw writer on `device`; resolves `acked(n)` once n writes are acknowledged, `ended` with what it saw. */
function startWriter(device: string) {
  const writer = spawn(process.execPath, ['-e', writerScript, device]);
  let acknowledged = 0;
  let failed = false;
  const waiters: { count: number; resolve(): void }[] = [];
  writer.stdout.setEncoding('utf8');
  writer.stdout.on('data', (chunk: string) => {
    for (const line of chunk.trim().split('\n')) {
      if (line === 'failed') failed = true;
      else acknowledged = Math.max(acknowledged, Number(line));
    }
    for (const waiter of waiters.filter((entry) => acknowledged >= entry.count)) waiter.resolve();
  });
  const ended = new Promise<{ acknowledged: number; failed: boolean }>((resolve) =>
    writer.on('exit', () => resolve({ acknowledged, failed })),
  );
  return {
    acked: (count: number) => new Promise<void>((resolve) => waiters.push({ count, resolve })),
    ended,
  };
}

function assertStamped(data: Buffer, blocks: number): void {
  for (let block = 0; block < blocks; block++) {
    assert.equal(data.readUInt32LE(block * 4096), block + 1, `acknowledged write ${block + 1} is there`);
    assert.equal(data.readUInt32LE(block * 4096 + 4092), block + 1);
  }
}

/** A fresh folder with a raw image of BLOCKS blocks; afterwards every helper serving from it is stopped and it is removed. */
async function withRawImage(
  use: (bed: { dir: string; image: string; trackingDir: string; runtimeDir: string }) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-crash-'));
  const bed = {
    dir,
    image: join(dir, 'raw.img'),
    trackingDir: join(dir, 'tracking'),
    runtimeDir: join(dir, 'taps'),
  };
  try {
    await run('truncate', ['-s', `${(BLOCKS * 4096) / (1 << 20)}M`, bed.image]);
    await use(bed);
  } finally {
    await stopHelpersUnder(bed.runtimeDir);
    await rm(dir, { recursive: true, force: true });
  }
}

/** The first `blocks` blocks as the loop device serves them. */
async function readThrough(loopDevice: string, blocks: number): Promise<Buffer> {
  const device = await open(loopDevice, 'r');
  const through = Buffer.alloc(blocks * 4096);
  await device.read(through, 0, through.length, 0);
  await device.close();
  return through;
}

test('kill -9 of the engine: no write fails, the next engine adopts the volume with its tracking; a second attach is refused', {
  skip: skipReason ?? false,
  timeout: 120_000,
}, async () => {
  await withRawImage(async ({ dir, image, trackingDir, runtimeDir }) => {
    let host: ReturnType<typeof spawn> | null = null;
    try {
      // A point (a new tracking generation) and a clean detach first, so a valid tracking record exists.
      const first = await attachVolume(image, { trackingDir, runtimeDir, partscan: false });
      await first.setInterceptor(null, 65536, { resetTracking: true });
      await first.detach();

      host = spawn(process.execPath, [
        '--input-type=module',
        '-e',
        hostScript,
        attachModule,
        image,
        trackingDir,
        runtimeDir,
      ]);
      const started = host;
      const hostExited = new Promise((resolve) => started.on('exit', resolve));
      const { loopDevice } = await new Promise<{ loopDevice: string }>((resolve, reject) => {
        let out = '';
        started.stdout?.on('data', (chunk) => {
          out += chunk;
          if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0] as string));
        });
        started.on('exit', (code) => reject(new Error(`host exited ${code}`)));
      });
      const writer = startWriter(loopDevice);
      await writer.acked(200);

      // While a helper serves the image, nobody serves it again: not this engine, not one with other directories.
      await assert.rejects(
        attachVolume(image, { trackingDir, runtimeDir, partscan: false }),
        (error: Error) =>
          error instanceof TapRefusedError && /a tap helper serves it for another engine/.test(error.message),
      );
      await assert.rejects(
        attachVolume(image, { runtimeDir: join(dir, 'elsewhere'), partscan: false }),
        (error: Error) =>
          error instanceof TapRefusedError && /already served by another tap/.test(error.message),
      );
      // Adopting is refused too while the host is connected to the helper.
      await assert.rejects(
        attachVolume(image, { trackingDir, runtimeDir, partscan: false, adopt: true }),
        /its tap helper serves another engine/,
      );

      started.kill('SIGKILL');
      await hostExited;
      const { acknowledged, failed } = await writer.ended;
      assert.equal(failed, false, 'no write failed');
      assert.equal(acknowledged, BLOCKS, 'every write went through');

      const adopted = await attachVolume(image, { trackingDir, runtimeDir, partscan: false, adopt: true });
      try {
        assert.equal(adopted.loopDevice, loopDevice, 'the same loop device: nothing was remounted');
        assert.deepEqual(await loopDevicesBackedBy(image), []);
        const status = await adopted.changedRanges();
        assert.equal(status.valid, true, status.reason);
        assert.deepEqual(status.ranges, [{ start: 0, length: BLOCKS * 4096 }]);
        assertStamped(await readThrough(loopDevice, BLOCKS), BLOCKS);
      } finally {
        await adopted.detach();
      }
      assertStamped(await readFile(image), BLOCKS);
    } finally {
      host?.kill('SIGKILL');
    }
  });
});

test('kill -9 of the tap helper: writes fail at once, acknowledged ones are in the image, attaching again serves it anew', {
  skip: skipReason ?? false,
  timeout: 120_000,
}, async () => {
  await withRawImage(async ({ image, trackingDir, runtimeDir }) => {
    const volume = await attachVolume(image, { trackingDir, runtimeDir, partscan: false });
    const writer = startWriter(volume.loopDevice);
    await writer.acked(200);
    process.kill(volume.helperPid, 'SIGKILL');
    const { acknowledged, failed } = await writer.ended;
    assert.equal(failed, true, 'the loop device fails writes once its helper is gone');
    assert.ok(acknowledged >= 200 && acknowledged < BLOCKS, `${acknowledged} writes acknowledged`);
    assert.match(await volume.whenLost(), /is gone .*run 'diskline attach .*' to serve it again/);
    assertStamped(await readFile(image), acknowledged);

    // The one command: attach again. What the dead helper left is cleared, the source is served anew.
    const again = await attachVolume(image, { trackingDir, runtimeDir, partscan: false });
    try {
      assert.deepEqual(
        await loopDevicesBackedBy(again.fuseFile),
        [again.loopDevice],
        'the dead loop device is gone',
      );
      const status = await again.changedRanges();
      assert.equal(status.valid, false);
      assert.equal(
        status.reason,
        'the previous attach ended without a clean detach (engine crash or killed), so writes may be missing',
      );
      assertStamped(await readThrough(again.loopDevice, acknowledged), acknowledged);
    } finally {
      await again.detach();
    }
  });
});
