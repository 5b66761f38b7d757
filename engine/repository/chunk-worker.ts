// Worker thread body for the backup: turns a batch of raw units into pack blobs (keyed id, zstd, AES-256-GCM)
// off the main thread, so that hashing, compression and encryption run on every core. The batch lives in a slot
// of memory shared with the main thread (chunk-slots.ts): messages carry only the slot's number. A unit whose id
// the repository probably holds already is only hashed.
import { parentPort, workerData } from 'node:worker_threads';
import { chunkIds, encodeChunks } from './chunk-codec.ts';
import { type BatchReply, type BatchRequest, ChunkSlots, type SlotSizes } from './chunk-slots.ts';
import type { RepositoryKeys } from './keys.ts';
import { KnownIds } from './known-ids.ts';

const { encrypted, dataKey, idKey, known, shared, sizes } = workerData as {
  encrypted: boolean;
  dataKey: Uint8Array;
  idKey: Uint8Array;
  known: SharedArrayBuffer;
  shared: SharedArrayBuffer;
  sizes: SlotSizes;
};
const keys: RepositoryKeys = { encrypted, dataKey: Buffer.from(dataKey), idKey: Buffer.from(idKey) };
const knownIds = new KnownIds(known);
const slots = new ChunkSlots(sizes, shared);

parentPort!.on('message', (request: BatchRequest) => {
  const slot = slots.slot(request.slot);
  const count = request.count;
  const lengths = slot.lengths.subarray(0, count);
  chunkIds(keys, slot.input, lengths, slot.ids);
  for (let i = 0; i < count; i++) {
    slot.encode[i] = request.force || !knownIds.mightContain(slot.ids.subarray(i * 32, i * 32 + 32)) ? 1 : 0;
  }
  encodeChunks(keys, slot.input, lengths, slot.ids, slot.encode, slot.output, slot.blobLengths, slot.flags);
  const reply: BatchReply = { seq: request.seq };
  parentPort!.postMessage(reply);
});
