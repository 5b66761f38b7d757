// Worker thread body for the backup: turns batches of raw units into pack blobs (keyed id, zstd, AES-256-GCM)
// off the main thread, so hashing, compression and encryption run on every core. A unit whose id is probably
// known already is only hashed. One message each way per batch keeps the hand-over cost small.
import { parentPort, workerData } from 'node:worker_threads';
import { chunkId, encodeChunk } from './chunk-codec.ts';
import type { RepositoryKeys } from './keys.ts';
import { KnownIds } from './known-ids.ts';

const { encrypted, dataKey, idKey, known } = workerData as {
  encrypted: boolean;
  dataKey: Uint8Array;
  idKey: Uint8Array;
  known: SharedArrayBuffer;
};
const keys: RepositoryKeys = { encrypted, dataKey: Buffer.from(dataKey), idKey: Buffer.from(idKey) };
const knownIds = new KnownIds(known);

export interface BatchRequest {
  batch: number;
  /** The units' bytes back to back (the buffer may be longer). */
  data: ArrayBuffer;
  lengths: number[];
  /** Encode even when the id is probably known. */
  force: boolean;
}

export interface BatchReply {
  batch: number;
  /** 32 bytes per unit. */
  ids: ArrayBuffer;
  /** Per unit: -1 = probably known (not encoded), else the blob's length in `blobs`. */
  blobLengths: number[];
  flags: number[];
  blobs: ArrayBuffer;
  /** The request's bytes, handed back so a wrong guess can be encoded after all. */
  data: ArrayBuffer;
}

parentPort!.on('message', (request: BatchRequest) => {
  const ids = Buffer.allocUnsafeSlow(32 * request.lengths.length);
  const blobLengths: number[] = [];
  const flags: number[] = [];
  const blobs: Buffer[] = [];
  let at = 0;
  request.lengths.forEach((length, i) => {
    const data = Buffer.from(request.data, at, length);
    at += length;
    const id = chunkId(keys, data);
    id.copy(ids, i * 32);
    if (!request.force && knownIds.mightContain(id)) {
      blobLengths.push(-1);
      flags.push(0);
      return;
    }
    const encoded = encodeChunk(keys, data, id);
    blobLengths.push(encoded.blob.length);
    flags.push(encoded.flags);
    blobs.push(encoded.blob);
  });
  const total = blobs.reduce((sum, b) => sum + b.length, 0);
  const joined = Buffer.allocUnsafeSlow(total);
  let offset = 0;
  for (const blob of blobs) offset += blob.copy(joined, offset);
  const reply: BatchReply = {
    batch: request.batch,
    ids: ids.buffer as ArrayBuffer,
    blobLengths,
    flags,
    blobs: joined.buffer as ArrayBuffer,
    data: request.data,
  };
  parentPort!.postMessage(reply, [reply.ids, reply.blobs, reply.data]);
});
