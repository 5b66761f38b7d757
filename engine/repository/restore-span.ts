// One restore span's decoding: the blobs of a run of a pack, turned into the units' bytes back to back. Shared by
// the restore workers and the main thread (which decodes itself when there is no core to spare for a worker).
import { BLOB_HEADER_BYTES, DamagedChunkError, decodeChunk } from './chunk-codec.ts';
import type { RepositoryKeys } from './keys.ts';

export interface SpanRequest {
  seq: number;
  /** Offset and length in the shared buffer of the span's pack bytes (from its first blob header). */
  inputOffset: number;
  inputLength: number;
  /** Offset in the shared buffer where the decoded units go, back to back. */
  outputOffset: number;
  /** Offset in the shared buffer of 32 bytes per unit: the chunk id each blob must hold. */
  idsOffset: number;
  /** Per unit: offset of its blob header in `input`, its stored length and the unit's expected length. */
  headerOffsets: number[];
  storedLengths: number[];
  unitLengths: number[];
}

export interface SpanReply {
  seq: number;
  /** Set when a chunk is damaged: the DamagedChunkError's message. */
  damaged: string | null;
}

/** Decodes a span's blobs from `input` into `shared` at request.outputOffset; returns what is damaged, or null. */
export function decodeSpan(
  keys: RepositoryKeys,
  input: Buffer,
  shared: Buffer,
  request: SpanRequest,
): string | null {
  let at = request.outputOffset;
  try {
    for (let i = 0; i < request.headerOffsets.length; i++) {
      const header = request.headerOffsets[i]!;
      const stored = header + BLOB_HEADER_BYTES;
      const data = decodeChunk(
        keys,
        input.subarray(header, stored),
        input.subarray(stored, stored + request.storedLengths[i]!),
        shared.subarray(request.idsOffset + i * 32, request.idsOffset + i * 32 + 32),
      );
      const expected = request.unitLengths[i]!;
      if (data.length !== expected)
        throw new DamagedChunkError(`has ${data.length} bytes, expected ${expected}`);
      data.copy(shared, at);
      at += expected;
    }
  } catch (error) {
    if (!(error instanceof DamagedChunkError)) throw error;
    return error.message;
  }
  return null;
}
