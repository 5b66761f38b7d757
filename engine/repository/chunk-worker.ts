// Worker thread body for the backup: hashes a batch of raw units (keyed ids) and stores the new ones as one group
// blob (zstd, AES-256-GCM), off the main thread, so that the work runs on every core. The batch lives in a slot
// of memory shared with the main thread (chunk-slots.ts): messages carry only the slot's number. A unit whose id
// the repository probably holds already, or that repeats an earlier unit of the batch, is only hashed.
import { parentPort, workerData } from 'node:worker_threads';
import { CHUNK_ID_BYTES, chunkIds, encodeGroup } from './chunk-codec.ts';
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
  const inBatch = new Set<string>();
  for (let i = 0; i < count; i++) {
    const id = slot.ids.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES);
    const key = id.toString('latin1');
    const isNew = !inBatch.has(key) && (request.force || !knownIds.mightContain(id));
    inBatch.add(key);
    slot.members[i] = isNew ? 1 : 0;
  }
  const groupLength = encodeGroup(
    keys,
    slot.input,
    lengths,
    slot.ids,
    slot.members.subarray(0, count),
    slot.output,
  );
  const reply: BatchReply = { seq: request.seq, groupLength };
  parentPort!.postMessage(reply);
});
