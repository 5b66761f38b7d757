// Chunks' way into a pack and back, a batch at a time: keyed id, zstd when it shrinks, AES-256-GCM bound to the
// blob header (docs/repository-format.md). The native helper does the work (contexts made once per thread:
// node:crypto and node:zlib build them for every chunk, which cost more than the work on 64 KiB); the same
// steps in node:crypto and node:zlib stand in when it is not built, and tests hold the two to each other.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { constants as zlibConstants, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { nativeHelper, nativeHelperAvailable } from '../native/index.ts';
import type { RepositoryKeys } from './keys.ts';

export const CHUNK_ID_BYTES = 32;
/** id (32) | flags (1) | 3 zero bytes | rawLength u32 | storedLength u32 | 4 zero bytes */
export const BLOB_HEADER_BYTES = 48;
/** The part of the blob header bound into the ciphertext as AAD: id, flags, 3 zero bytes, rawLength. */
const AAD_BYTES = 40;
/** What sealing adds to a body: nonce (12) and tag (16). */
const SEAL_BYTES = 28;
export const FLAG_COMPRESSED = 1;
// Level 1: on one 64 KiB chunk at a time, level 3 spends more setting up its larger tables than it gains
// (measured: same ratio on disk data, a quarter of the speed).
const ZSTD_LEVEL = 1;

/** The most a chunk of `rawLength` bytes can take in a pack: header, body no longer than the chunk, seal. */
export function maxBlobBytes(rawLength: number): number {
  return BLOB_HEADER_BYTES + SEAL_BYTES + rawLength;
}

/** Why a chunk's stored bytes were rejected (the native helper returns the same numbers). */
export const ChunkDamage = {
  otherId: 1,
  truncated: 2,
  authentication: 3,
  decompression: 4,
  length: 5,
  content: 6,
} as const;
type Damage = (typeof ChunkDamage)[keyof typeof ChunkDamage];

const DAMAGE_WORDS: Record<Damage, string> = {
  1: 'blob header names another chunk',
  2: 'stored bytes truncated',
  3: 'fails authentication (pack bytes changed)',
  4: 'does not decompress',
  5: 'holds a length other than its unit',
  6: 'content does not match its id',
};

/** Thrown when a chunk's stored bytes fail authentication, decompression, length or id checks. */
export class DamagedChunkError extends Error {
  /** Which chunk of the batch. */
  readonly index: number;
  constructor(index: number, id: Buffer, damage: Damage) {
    super(`chunk ${id.toString('hex').slice(0, 16)}: ${DAMAGE_WORDS[damage]}`);
    this.index = index;
  }
}

/** Whether the native helper does the work; read once, as every batch would ask. */
const native = nativeHelperAvailable() ? nativeHelper() : null;

/** Zeros to compare units against (memcmp through Buffer.equals is many times faster than a JS loop). */
const ZEROS = Buffer.alloc(64 * 1024);

export function isAllZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const end = Math.min(data.length, at + ZEROS.length);
    if (!data.subarray(at, end).equals(ZEROS.subarray(0, end - at))) return false;
  }
  return true;
}

function hmacId(keys: RepositoryKeys, data: Uint8Array): Buffer {
  return createHmac('sha256', keys.idKey).update(data).digest();
}

/** The keyed id of each chunk (`lengths[i]` bytes each, back to back in `data`) into `ids`, 32 bytes each. */
export function chunkIds(keys: RepositoryKeys, data: Buffer, lengths: Uint32Array, ids: Buffer): void {
  if (native) native.chunkIds(keys.idKey, data, lengths, ids);
  else referenceCodec.chunkIds(keys, data, lengths, ids);
}

function chunkIdsJs(keys: RepositoryKeys, data: Buffer, lengths: Uint32Array, ids: Buffer): void {
  let at = 0;
  for (let i = 0; i < lengths.length; i++) {
    hmacId(keys, data.subarray(at, at + lengths[i]!)).copy(ids, i * CHUNK_ID_BYTES);
    at += lengths[i]!;
  }
}

/**
 * The blobs of the chunks with `encode[i]` set (their ids in `ids`), back to back into `out`, which must hold
 * maxBlobBytes of each. `blobLengths[i]` gets each blob's length (-1 for a chunk not encoded) and `flags[i]`
 * its flags. Returns the bytes written.
 */
export function encodeChunks(
  keys: RepositoryKeys,
  data: Buffer,
  lengths: Uint32Array,
  ids: Buffer,
  encode: Uint8Array,
  out: Buffer,
  blobLengths: Int32Array,
  flags: Uint8Array,
): number {
  if (native) {
    const key = keys.encrypted ? keys.dataKey : null;
    return native.encodeChunks(key, ZSTD_LEVEL, data, lengths, ids, encode, out, blobLengths, flags);
  }
  return referenceCodec.encodeChunks(keys, data, lengths, ids, encode, out, blobLengths, flags);
}

function encodeChunksJs(
  keys: RepositoryKeys,
  data: Buffer,
  lengths: Uint32Array,
  ids: Buffer,
  encode: Uint8Array,
  out: Buffer,
  blobLengths: Int32Array,
  flags: Uint8Array,
): number {
  let at = 0;
  let placed = 0;
  for (let i = 0; i < lengths.length; i++) {
    const chunk = data.subarray(at, at + lengths[i]!);
    at += lengths[i]!;
    if (!encode[i]) {
      blobLengths[i] = -1;
      flags[i] = 0;
      continue;
    }
    const blob = encodeOne(keys, chunk, ids.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES));
    placed += blob.copy(out, placed);
    blobLengths[i] = blob.length;
    flags[i] = blob[32]!;
  }
  return placed;
}

function blobHeader(id: Buffer, flags: number, rawLength: number, storedLength: number): Buffer {
  const header = Buffer.alloc(BLOB_HEADER_BYTES);
  id.copy(header, 0);
  header[32] = flags;
  header.writeUInt32LE(rawLength, 36);
  header.writeUInt32LE(storedLength, 40);
  return header;
}

function encodeOne(keys: RepositoryKeys, data: Buffer, id: Buffer): Buffer {
  let flags = 0;
  let body = data;
  // Telling zstd the input size (and a window just big enough) sizes its tables for one chunk.
  const compressed = zstdCompressSync(data, {
    pledgedSrcSize: data.length,
    params: {
      [zlibConstants.ZSTD_c_compressionLevel]: ZSTD_LEVEL,
      [zlibConstants.ZSTD_c_windowLog]: Math.max(10, Math.ceil(Math.log2(data.length))),
    },
  });
  if (compressed.length < data.length) {
    body = compressed;
    flags |= FLAG_COMPRESSED;
  }
  if (!keys.encrypted) return Buffer.concat([blobHeader(id, flags, data.length, body.length), body]);
  const header = blobHeader(id, flags, data.length, body.length + SEAL_BYTES);
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keys.dataKey, nonce);
  cipher.setAAD(header.subarray(0, AAD_BYTES));
  return Buffer.concat([header, nonce, cipher.update(body), cipher.final(), cipher.getAuthTag()]);
}

/** Where a batch's blobs lie in `input` and what each must turn into. */
export interface BlobPlan {
  /** Offset in `input` of each blob's header. */
  headerOffsets: Uint32Array;
  storedLengths: Uint32Array;
  /** Length each decoded chunk must have: its unit's. */
  unitLengths: Uint32Array;
  /** The id each blob must hold, 32 bytes each. */
  ids: Buffer;
}

/**
 * Opens, decompresses and checks each blob of the plan into `out`, back to back. With `checkIds` the id is also
 * recomputed from the plain bytes (always done unencrypted, where it is the only check of the content). Throws
 * DamagedChunkError naming the first damaged chunk; `out` then holds garbage from it on.
 */
export function decodeChunks(
  keys: RepositoryKeys,
  checkIds: boolean,
  input: Buffer,
  plan: BlobPlan,
  out: Buffer,
): void {
  if (native) {
    const key = keys.encrypted ? keys.dataKey : null;
    const verdict = native.decodeChunks(
      key,
      keys.idKey,
      checkIds,
      input,
      plan.headerOffsets,
      plan.storedLengths,
      plan.unitLengths,
      plan.ids,
      out,
    );
    if (verdict >= 0) {
      const index = Math.floor(verdict / 8);
      const id = plan.ids.subarray(index * CHUNK_ID_BYTES, (index + 1) * CHUNK_ID_BYTES);
      throw new DamagedChunkError(index, id, (verdict % 8) as Damage);
    }
    return;
  }
  referenceCodec.decodeChunks(keys, checkIds, input, plan, out);
}

function decodeChunksJs(
  keys: RepositoryKeys,
  checkIds: boolean,
  input: Buffer,
  plan: BlobPlan,
  out: Buffer,
): void {
  let at = 0;
  for (let i = 0; i < plan.headerOffsets.length; i++) {
    const header = plan.headerOffsets[i]!;
    const id = plan.ids.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES);
    const stored = input.subarray(
      header + BLOB_HEADER_BYTES,
      header + BLOB_HEADER_BYTES + plan.storedLengths[i]!,
    );
    const result = decodeOne(keys, checkIds, input.subarray(header, header + BLOB_HEADER_BYTES), stored, id);
    if (typeof result === 'number') throw new DamagedChunkError(i, id, result);
    if (result.length !== plan.unitLengths[i]) throw new DamagedChunkError(i, id, ChunkDamage.length);
    at += result.copy(out, at);
  }
}

/** Decodes one blob (header and stored bytes) that must hold `rawLength` bytes of chunk `id`. */
export function decodeChunk(
  keys: RepositoryKeys,
  blob: Buffer,
  id: Buffer,
  rawLength: number,
  checkId = false,
): Buffer {
  const out = Buffer.allocUnsafe(rawLength);
  const plan: BlobPlan = {
    headerOffsets: Uint32Array.of(0),
    storedLengths: Uint32Array.of(blob.length - BLOB_HEADER_BYTES),
    unitLengths: Uint32Array.of(rawLength),
    ids: id,
  };
  decodeChunks(keys, checkId, blob, plan, out);
  return out;
}

function decodeOne(
  keys: RepositoryKeys,
  checkId: boolean,
  header: Buffer,
  stored: Buffer,
  expectedId: Buffer,
): Buffer | Damage {
  if (!header.subarray(0, CHUNK_ID_BYTES).equals(expectedId)) return ChunkDamage.otherId;
  const flags = header[32]!;
  const rawLength = header.readUInt32LE(36);
  let body = stored;
  if (keys.encrypted) {
    if (stored.length < SEAL_BYTES) return ChunkDamage.truncated;
    const decipher = createDecipheriv('aes-256-gcm', keys.dataKey, stored.subarray(0, 12));
    decipher.setAAD(header.subarray(0, AAD_BYTES));
    decipher.setAuthTag(stored.subarray(stored.length - 16));
    try {
      body = Buffer.concat([decipher.update(stored.subarray(12, stored.length - 16)), decipher.final()]);
    } catch {
      return ChunkDamage.authentication;
    }
  }
  let data = body;
  if (flags & FLAG_COMPRESSED) {
    try {
      data = zstdDecompressSync(body);
    } catch {
      return ChunkDamage.decompression;
    }
  }
  if (data.length !== rawLength) return ChunkDamage.length;
  if ((checkId || !keys.encrypted) && !hmacId(keys, data).equals(expectedId)) return ChunkDamage.content;
  return data;
}

/** The same codec in node:crypto and node:zlib: used when the native helper is not built; tests hold the two to each other. */
export const referenceCodec = {
  chunkIds: chunkIdsJs,
  encodeChunks: encodeChunksJs,
  decodeChunks: decodeChunksJs,
};

/** True when batches go through the native helper. */
export const nativeCodec = native !== null;
