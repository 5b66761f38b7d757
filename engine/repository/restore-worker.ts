// Worker thread body for restore: turns one span of pack bytes (blobs back to back) into the units' plain bytes,
// written back to back into an output buffer the main thread then writes to the target in one call. The
// buffers are slots of one SharedArrayBuffer (messages carry only offsets): transferring megabyte ArrayBuffers
// back and forth made V8 count them as new external memory each time and run a full GC every few spans.
import { parentPort, workerData } from 'node:worker_threads';
import type { RepositoryKeys } from './keys.ts';
import { decodeSpan, type SpanReply, type SpanRequest } from './restore-span.ts';

const { encrypted, dataKey, idKey, shared } = workerData as {
  encrypted: boolean;
  dataKey: Uint8Array;
  idKey: Uint8Array;
  shared: SharedArrayBuffer;
};
const output = Buffer.from(shared);
const keys: RepositoryKeys = { encrypted, dataKey: Buffer.from(dataKey), idKey: Buffer.from(idKey) };

parentPort!.on('message', (request: SpanRequest) => {
  const input = Buffer.from(shared, request.inputOffset, request.inputLength);
  const damaged = decodeSpan(keys, input, output, request);
  const reply: SpanReply = { seq: request.seq, damaged };
  parentPort!.postMessage(reply);
});
