// A device without the tap is backed up only when nothing else uses it: a process holding it open for writing
// makes the backup a refusal that names the process (unless the caller accepts a crash-consistent point), and a
// backup of the image under that loop device too; a reader does not.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { RefusalError } from '../../protocol/failure.ts';
import { withLoop } from '../testing/loop.ts';
import { loopUnavailableReason } from '../testing/tools.ts';
import { checkUnprotectedSource } from './backup-source.ts';

/** A shell holding `device` open (read-write with `<>`, read-only with `<`) until its stdin closes. */
async function holder(device: string, redirect: '<>' | '<'): Promise<ChildProcess> {
  const child = spawn('sh', ['-c', `exec 3${redirect}"$1"; echo ready; read line`, 'sh', device], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the holder exited ${code}`)));
  });
  return child;
}

async function release(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.stdin!.end();
  await exited;
}

test('a device open for writing by another process is refused, naming it, and so is its image; a reader is no writer', {
  skip: loopUnavailableReason() ?? false,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-backup-source-'));
  try {
    const image = join(dir, 'disk.img');
    await writeFile(image, '');
    await truncate(image, 8 << 20);
    await withLoop(image, async ({ device }) => {
      assert.deepEqual(await checkUnprotectedSource(device, false), []);
      assert.deepEqual(
        await checkUnprotectedSource(image, false),
        [],
        'an image attached but unused is not in use',
      );
      const reader = await holder(device, '<');
      try {
        assert.deepEqual(await checkUnprotectedSource(device, false), []);
      } finally {
        await release(reader);
      }
      const writer = await holder(device, '<>');
      try {
        const using = `pid ${writer.pid} (sh) has ${device} open for writing`;
        await assert.rejects(checkUnprotectedSource(device, false), (error: Error) => {
          assert.ok(error instanceof RefusalError);
          assert.ok(
            error.message.startsWith(`refusing to back up ${device}: it is in use (${using})`),
            error.message,
          );
          assert.match(error.message, /add --allow-inconsistent/);
          return true;
        });
        assert.deepEqual(await checkUnprotectedSource(device, true), [using]);
        // The image under that loop device is in use through it.
        await assert.rejects(
          checkUnprotectedSource(image, false),
          (error: Error) =>
            error instanceof RefusalError &&
            error.message.startsWith(
              `refusing to back up ${image}: it is in use (through ${device}: ${using})`,
            ),
        );
      } finally {
        await release(writer);
      }
      assert.deepEqual(await checkUnprotectedSource(device, false), []);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
