// One restore span's decoding: the group blobs of a run of a pack, turned into the units' bytes back to back.
// Shared by the restore workers and the main thread (which decodes itself when there is no core to spare for a
// worker). A group whose units are all wanted, in order, is decoded straight into the output; otherwise it is
// decoded aside and the wanted units copied out.
import {
  ChunkDamage,
  DamagedChunkError,
  DamagedGroupError,
  decodeGroup,
  GROUP_HEADER_BYTES,
  groupHeader,
  groupHolds,
  MAX_GROUP_BYTES,
} from './chunk-codec.ts';
import type { RepositoryKeys } from './keys.ts';

/** Where a span's groups lie in its pack bytes and which units it wants from them, in output order. */
export interface SpanPlan {
  /** Per group: offset in the span's input and whole blob length. */
  groupOffsets: number[];
  groupLengths: number[];
  /** Per unit: its group (index into the above), and its place in that group's plain bytes. */
  unitGroups: number[];
  rawOffsets: number[];
  unitLengths: number[];
}

export interface SpanRequest extends SpanPlan {
  seq: number;
  /** Offset and length in the shared buffer of the span's pack bytes (from its first group). */
  inputOffset: number;
  inputLength: number;
  /** Offset in the shared buffer where the decoded units go, back to back. */
  outputOffset: number;
  /** Offset in the shared buffer of 32 bytes per unit: the chunk id each unit must be. */
  idsOffset: number;
}

export interface SpanReply {
  seq: number;
  /** Set when a chunk is damaged: the DamagedChunkError's message. */
  damaged: string | null;
}

/** Plain bytes of groups not decoded in place (grown as needed, one per thread). */
let aside = Buffer.alloc(0);

/** Decodes a span's groups from `input` into `shared` at request.outputOffset; returns what is damaged, or null. */
export function decodeSpan(
  keys: RepositoryKeys,
  input: Buffer,
  shared: Buffer,
  request: SpanRequest,
): string | null {
  const units = request.unitGroups.length;
  const idOf = (u: number) => shared.subarray(request.idsOffset + u * 32, request.idsOffset + u * 32 + 32);
  const outputAt: number[] = [];
  let at = request.outputOffset;
  const byGroup: number[][] = request.groupOffsets.map(() => []);
  for (let u = 0; u < units; u++) {
    outputAt.push(at);
    at += request.unitLengths[u]!;
    byGroup[request.unitGroups[u]!]!.push(u);
  }
  for (let g = 0; g < byGroup.length; g++) {
    const wanted = byGroup[g]!;
    if (wanted.length === 0) continue;
    const first = idOf(wanted[0]!);
    try {
      const start = request.groupOffsets[g]!;
      const blob = input.subarray(start, start + request.groupLengths[g]!);
      if (blob.length < GROUP_HEADER_BYTES) throw new DamagedGroupError(ChunkDamage.truncated);
      const { rawLength } = groupHeader(blob);
      if (rawLength > MAX_GROUP_BYTES) throw new DamagedGroupError(ChunkDamage.length);
      // In place when the wanted units are the whole group, in order, and lie back to back in the output.
      let expected = 0;
      let inPlace = true;
      for (const [i, u] of wanted.entries()) {
        if (
          request.rawOffsets[u] !== expected ||
          (i > 0 && outputAt[u] !== outputAt[wanted[i - 1]!]! + request.unitLengths[wanted[i - 1]!]!)
        )
          inPlace = false;
        expected += request.unitLengths[u]!;
      }
      inPlace &&= expected === rawLength;
      if (!inPlace && aside.length < rawLength) aside = Buffer.allocUnsafeSlow(rawLength);
      const into = inPlace
        ? shared.subarray(outputAt[wanted[0]!]!, outputAt[wanted[0]!]! + rawLength)
        : aside;
      const damage = decodeGroup(keys, false, blob, into);
      if (damage !== 0) throw new DamagedGroupError(damage);
      for (const u of wanted) {
        const rawOffset = request.rawOffsets[u]!;
        const length = request.unitLengths[u]!;
        if (!groupHolds(blob, idOf(u), rawOffset, length))
          throw new DamagedChunkError(idOf(u), ChunkDamage.otherId);
        if (!inPlace) aside.copy(shared, outputAt[u]!, rawOffset, rawOffset + length);
      }
    } catch (error) {
      if (error instanceof DamagedGroupError) return new DamagedChunkError(first, error.damage).message;
      if (error instanceof DamagedChunkError) return error.message;
      throw error;
    }
  }
  return null;
}
