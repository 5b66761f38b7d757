// Pack files: many chunk blobs in one file, with a header and a trailer so a pack can be checked and the
// index rebuilt from packs alone. Layout in docs/repository-format.md.
import { allocAligned, nativeHelperAvailable } from '../native/index.ts';
import { CHUNK_ID_BYTES, GROUP_HEADER_BYTES, groupHeader, MEMBER_BYTES } from './chunk-codec.ts';

export const PACK_MAGIC = Buffer.from('DLPACK01', 'ascii');
export const PACK_END_MAGIC = Buffer.from('DLPKEND1', 'ascii');
export const PACK_HEADER_BYTES = 24;
export const PACK_TRAILER_BYTES = 12;

export function packFileName(packId: string): string {
  return `packs/${packId.slice(0, 2)}/${packId}`;
}

/**
 * What is wrong with a pack's first bytes, or null: they must be the magic and the pack's own id. The groups
 * inside are sealed over their member lists of keyed ids, so a pack under another name cannot give another
 * chunk's bytes; this check names the move before any group is read.
 */
export function packHeaderProblem(packId: string, head: Buffer): string | null {
  if (head.length < PACK_HEADER_BYTES || !head.subarray(0, 8).equals(PACK_MAGIC)) return 'bad header';
  const named = head.subarray(8, PACK_HEADER_BYTES).toString('hex');
  return named === packId ? null : `it holds pack ${named} (a pack copied or moved to another name)`;
}

/** Where a blob landed in its pack: the offset of its header. */
export interface PlacedBlob {
  headerOffset: number;
  blobLength: number;
}

/**
 * Collects blobs in one buffer until the pack is big enough, then yields the file's bytes. Blobs are copied in
 * (they arrive in memory shared with the encoding threads, which is reused). The buffer is the caller's, to be
 * used again for a later pack once this one is written: first touches of fresh memory (page faults) cost more
 * than the copies themselves.
 */
export class PackBuilder {
  readonly packId: string;
  readonly #buffer: Buffer;
  #length = PACK_HEADER_BYTES;
  #count = 0;

  /**
   * A buffer for a pack of up to `capacity` blob bytes, aligned in memory when the native helper is there so
   * that the backend can write it around the page cache.
   */
  static allocate(capacity: number): Buffer {
    const bytes = PACK_HEADER_BYTES + capacity + PACK_TRAILER_BYTES;
    return nativeHelperAvailable() ? Buffer.from(allocAligned(bytes)) : Buffer.allocUnsafeSlow(bytes);
  }

  constructor(packId: string, buffer: Buffer) {
    this.packId = packId;
    this.#buffer = buffer;
    PACK_MAGIC.copy(this.#buffer, 0);
    this.#buffer.write(packId, 8, 16, 'hex');
  }

  get length(): number {
    return this.#length;
  }

  get count(): number {
    return this.#count;
  }

  /** The whole buffer, to reuse once the pack is written. */
  get buffer(): Buffer {
    return this.#buffer;
  }

  /** Whether a blob of `length` bytes still fits. */
  fits(length: number): boolean {
    return this.#length + length + PACK_TRAILER_BYTES <= this.#buffer.length;
  }

  add(blob: Buffer): PlacedBlob {
    if (!this.fits(blob.length)) throw new Error(`pack ${this.packId} is full`);
    const placed = { headerOffset: this.#length, blobLength: blob.length };
    this.#length += blob.copy(this.#buffer, this.#length);
    this.#count += 1;
    return placed;
  }

  /** The file's bytes. */
  finish(): Buffer {
    const trailer = this.#buffer.subarray(this.#length, this.#length + PACK_TRAILER_BYTES);
    trailer.writeUInt32LE(this.#count, 0);
    PACK_END_MAGIC.copy(trailer, 4);
    return this.#buffer.subarray(0, this.#length + PACK_TRAILER_BYTES);
  }
}

/** One group blob as a pack scan finds it: enough to rebuild its chunks' index entries. */
export interface ScannedGroup {
  blobOffset: number;
  blobLength: number;
  members: { id: Buffer; rawOffset: number; rawLength: number }[];
}

/** Reads a whole pack's structure; throws with what is wrong when the header, a group header or the trailer is bad. */
export function scanPack(packId: string, file: Buffer): ScannedGroup[] {
  const headerProblem =
    file.length < PACK_HEADER_BYTES + PACK_TRAILER_BYTES ? 'bad header' : packHeaderProblem(packId, file);
  if (headerProblem) throw new Error(`pack ${packId} is damaged: ${headerProblem}`);
  const end = file.length - PACK_TRAILER_BYTES;
  if (!file.subarray(end + 4).equals(PACK_END_MAGIC))
    throw new Error(`pack ${packId} is damaged: truncated (no trailer)`);
  const count = file.readUInt32LE(end);
  const groups: ScannedGroup[] = [];
  let offset = PACK_HEADER_BYTES;
  while (offset < end) {
    if (offset + GROUP_HEADER_BYTES > end)
      throw new Error(`pack ${packId} is damaged: group header cut at ${offset}`);
    const header = groupHeader(file.subarray(offset, offset + GROUP_HEADER_BYTES));
    const head = GROUP_HEADER_BYTES + header.count * MEMBER_BYTES;
    const blobLength = head + header.storedLength;
    if (header.count === 0 || offset + blobLength > end)
      throw new Error(`pack ${packId} is damaged: the group at ${offset} overruns the pack`);
    const members: ScannedGroup['members'] = [];
    let rawOffset = 0;
    for (let i = 0; i < header.count; i++) {
      const at = offset + GROUP_HEADER_BYTES + i * MEMBER_BYTES;
      const rawLength = file.readUInt32LE(at + CHUNK_ID_BYTES);
      members.push({ id: Buffer.from(file.subarray(at, at + CHUNK_ID_BYTES)), rawOffset, rawLength });
      rawOffset += rawLength;
    }
    groups.push({ blobOffset: offset, blobLength, members });
    offset += blobLength;
  }
  if (groups.length !== count)
    throw new Error(`pack ${packId} is damaged: ${groups.length} groups, trailer says ${count}`);
  return groups;
}
