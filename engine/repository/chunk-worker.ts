// Worker thread body for the backup: turns raw units into pack blobs (keyed id, zstd, AES-256-GCM) off the
// main thread, so hashing, compression and encryption run on every core.
import { parentPort, workerData } from 'node:worker_threads';
import { encodeChunk } from './chunk-codec.ts';
import type { RepositoryKeys } from './keys.ts';

const { encrypted, dataKey, idKey } = workerData as {
  encrypted: boolean;
  dataKey: Uint8Array;
  idKey: Uint8Array;
};
const keys: RepositoryKeys = { encrypted, dataKey: Buffer.from(dataKey), idKey: Buffer.from(idKey) };

parentPort!.on('message', (message: { seq: number; data: Uint8Array }) => {
  const data = Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength);
  const encoded = encodeChunk(keys, data);
  // Pooled (small) buffers share their ArrayBuffer; only a buffer that owns its memory may be transferred.
  const owns = encoded.blob.byteOffset === 0 && encoded.blob.buffer.byteLength === encoded.blob.length;
  const blob = owns ? encoded.blob : Buffer.from(encoded.blob);
  parentPort!.postMessage(
    { seq: message.seq, id: encoded.id, flags: encoded.flags, rawLength: encoded.rawLength, blob },
    owns || blob.buffer.byteLength === blob.length ? [blob.buffer as ArrayBuffer] : [],
  );
});
