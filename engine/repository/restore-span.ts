// One restore span's decoding: the blobs of a run of a pack, turned into the units' bytes back to back. Shared by
// the restore workers and the main thread (which decodes itself when there is no core to spare for a worker).
import { DamagedChunkError, decodeChunks } from './chunk-codec.ts';
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
  const count = request.headerOffsets.length;
  const outputBytes = request.unitLengths.reduce((sum, n) => sum + n, 0);
  try {
    decodeChunks(
      keys,
      false,
      input,
      {
        headerOffsets: Uint32Array.from(request.headerOffsets),
        storedLengths: Uint32Array.from(request.storedLengths),
        unitLengths: Uint32Array.from(request.unitLengths),
        ids: shared.subarray(request.idsOffset, request.idsOffset + 32 * count),
      },
      shared.subarray(request.outputOffset, request.outputOffset + outputBytes),
    );
  } catch (error) {
    if (!(error instanceof DamagedChunkError)) throw error;
    return error.message;
  }
  return null;
}
