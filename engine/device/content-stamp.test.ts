// Content stamps: equal only while nothing wrote the source. An image file's stamp changes with any write, even
// one whose modification time is set back; a file changed just now, or attached as a loop device, has none. A
// block device's stamp changes with a write through it and with a write to its backing file that bypasses it;
// a mounted one has none. Time is injected, so "a minute later" needs no waiting.
import assert from 'node:assert/strict';
import { open, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { makeFilesystem, withMount } from '../testing/filesystems.ts';
import { MiB, makeSparseImage, withTempDir } from '../testing/image.ts';
import { attachLoop } from '../testing/loop.ts';
import { contentStamp, QUIET_MS } from './content-stamp.ts';

const later = () => ({ now: Date.now() + QUIET_MS + 1000 });

async function overwrite(path: string, offset: number, bytes: Buffer): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.write(bytes, 0, bytes.length, offset);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

test('an image file: none right after a change; then equal until a write, even one whose mtime is set back', async () => {
  await withTempDir(async (dir) => {
    const image = join(dir, 'disk.img');
    await writeFile(image, Buffer.alloc(4 * MiB, 1));
    assert.equal(await contentStamp(image), null, 'changed just now: unknown');
    const first = await contentStamp(image, later());
    assert.ok(first);
    assert.equal(await contentStamp(image, later()), first, 'nothing wrote it: equal');
    const { atime, mtime } = await stat(image);
    await overwrite(image, MiB, Buffer.alloc(10, 2));
    await utimes(image, atime, mtime);
    const second = await contentStamp(image, later());
    assert.ok(second);
    assert.notEqual(second, first, 'a write with its mtime set back still changes the stamp (ctime)');
  });
});

test('a block device: changes with writes through it and to its backing file; none while attached or mounted', async () => {
  await withTempDir(async (dir) => {
    const image = await makeSparseImage(join(dir, 'disk.img'), 32 * MiB);
    await makeFilesystem(image, 'ext4');
    const old = new Date(Date.now() - 2 * QUIET_MS);
    await utimes(image, old, old);
    const loop = await attachLoop(image);
    try {
      assert.equal(await contentStamp(image, later()), null, 'an image attached as a loop device: unknown');
      const first = await contentStamp(loop.device, later());
      assert.ok(first, 'an idle loop device has a stamp');
      assert.equal(await contentStamp(loop.device, later()), first);
      await overwrite(loop.device, 8 * MiB, Buffer.alloc(4096, 3));
      const second = await contentStamp(loop.device, later());
      assert.ok(second);
      assert.notEqual(second, first, 'a write through the device changes it');
      await overwrite(image, 9 * MiB, Buffer.alloc(4096, 4));
      const third = await contentStamp(loop.device, later());
      assert.notEqual(third, second, 'a write to the backing file around the device changes it');
      await withMount(loop.device, 'ext4', async () => {
        assert.equal(await contentStamp(loop.device, later()), null, 'mounted: unknown');
      });
    } finally {
      await loop.detach();
    }
  });
});
