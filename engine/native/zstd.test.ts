import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { nativeHelperAvailable, zstdCompress, zstdDecompress } from './index.ts';

const skip = nativeHelperAvailable() ? false : 'the native helper is not built (npm run build)';
const text = Buffer.from('diskline restore point '.repeat(3000)).subarray(0, 65536);

test('zstd frames round-trip and are read by node:zlib, and the other way round', { skip }, () => {
  for (const data of [text, randomBytes(65536), Buffer.alloc(0), randomBytes(100)]) {
    const frame = zstdCompress(data, 1);
    assert.deepEqual(zstdDecompress(frame, data.length), data);
    assert.deepEqual(zstdDecompressSync(frame), data);
    assert.deepEqual(zstdDecompress(zstdCompressSync(data), data.length), data);
  }
  assert.ok(zstdCompress(text, 1).length < 1000, 'repetitive text shrinks');
});

test('a damaged frame or a wrong size is an error, never wrong bytes', { skip }, () => {
  const frame = zstdCompress(text, 1);
  assert.throws(() => zstdDecompress(frame, text.length - 1), { code: 'EZSTD' });
  assert.throws(() => zstdDecompress(frame, text.length + 1), { code: 'EZSTD', message: /fewer bytes/ });
  const damaged = Buffer.from(frame);
  damaged[damaged.length >> 1]! ^= 0xff;
  assert.throws(() => zstdDecompress(damaged.subarray(0, 8), text.length), { code: 'EZSTD' });
  assert.throws(() => zstdCompress('text' as unknown as Buffer, 1), TypeError);
});

test('worker threads compress with their own context', { skip }, async () => {
  const worker = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     const native = require(workerData.addon);
     parentPort.postMessage(native.zstdCompress(Buffer.from(workerData.data), 1));`,
    {
      eval: true,
      workerData: {
        addon: new URL('./build/Release/diskline_native.node', import.meta.url).pathname,
        data: text,
      },
    },
  );
  const [frame] = (await new Promise((resolve, reject) => {
    worker.once('message', (message) => resolve([message]));
    worker.once('error', reject);
  })) as [Uint8Array];
  assert.deepEqual(zstdDecompressSync(frame), text);
  await worker.terminate();
});
