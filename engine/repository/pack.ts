// Pack files: many chunk blobs in one file, with a header and a trailer so a pack can be checked and the
// index rebuilt from packs alone. Layout in docs/repository-format.md.
import { BLOB_HEADER_BYTES } from './chunk-codec.ts';

export const PACK_MAGIC = Buffer.from('DLPACK01', 'ascii');
export const PACK_END_MAGIC = Buffer.from('DLPKEND1', 'ascii');
export const PACK_HEADER_BYTES = 24;
export const PACK_TRAILER_BYTES = 12;

export function packFileName(packId: string): string {
  return `packs/${packId.slice(0, 2)}/${packId}`;
}

/** Where a blob landed in its pack: the offset of its header. */
export interface PlacedBlob {
  headerOffset: number;
  blobLength: number;
}

/** Collects blobs in memory until the pack is big enough, then yields the file's bytes. */
export class PackBuilder {
  readonly packId: string;
  readonly #parts: Buffer[] = [];
  #length = PACK_HEADER_BYTES;
  #count = 0;

  constructor(packId: string) {
    this.packId = packId;
    this.#parts.push(Buffer.concat([PACK_MAGIC, Buffer.from(packId, 'hex')]));
  }

  get length(): number {
    return this.#length;
  }

  get count(): number {
    return this.#count;
  }

  add(blob: Buffer): PlacedBlob {
    const placed = { headerOffset: this.#length, blobLength: blob.length };
    this.#parts.push(blob);
    this.#length += blob.length;
    this.#count += 1;
    return placed;
  }

  /** The file's bytes in parts, in order (not joined: a 32 MiB copy costs more than the writes). */
  finish(): Buffer[] {
    const trailer = Buffer.alloc(PACK_TRAILER_BYTES);
    trailer.writeUInt32LE(this.#count, 0);
    PACK_END_MAGIC.copy(trailer, 4);
    return [...this.#parts, trailer];
  }
}

export interface ScannedBlob {
  id: Buffer;
  flags: number;
  rawLength: number;
  storedLength: number;
  /** Offset of the stored bytes (after the blob header). */
  offset: number;
}

/** Reads a whole pack's structure; throws with what is wrong when the header, a blob header or the trailer is bad. */
export function scanPack(packId: string, file: Buffer): ScannedBlob[] {
  if (file.length < PACK_HEADER_BYTES + PACK_TRAILER_BYTES || !file.subarray(0, 8).equals(PACK_MAGIC)) {
    throw new Error(`pack ${packId} is damaged: bad header`);
  }
  if (file.subarray(8, 24).toString('hex') !== packId)
    throw new Error(`pack ${packId} is damaged: its header names another pack`);
  const end = file.length - PACK_TRAILER_BYTES;
  if (!file.subarray(end + 4).equals(PACK_END_MAGIC))
    throw new Error(`pack ${packId} is damaged: truncated (no trailer)`);
  const count = file.readUInt32LE(end);
  const blobs: ScannedBlob[] = [];
  let offset = PACK_HEADER_BYTES;
  while (offset < end) {
    if (offset + BLOB_HEADER_BYTES > end)
      throw new Error(`pack ${packId} is damaged: blob header cut at ${offset}`);
    const storedLength = file.readUInt32LE(offset + 40);
    const blob = {
      id: Buffer.from(file.subarray(offset, offset + 32)),
      flags: file[offset + 32]!,
      rawLength: file.readUInt32LE(offset + 36),
      storedLength,
      offset: offset + BLOB_HEADER_BYTES,
    };
    if (blob.offset + storedLength > end)
      throw new Error(`pack ${packId} is damaged: blob at ${offset} overruns the pack`);
    blobs.push(blob);
    offset = blob.offset + storedLength;
  }
  if (blobs.length !== count)
    throw new Error(`pack ${packId} is damaged: ${blobs.length} blobs, trailer says ${count}`);
  return blobs;
}
