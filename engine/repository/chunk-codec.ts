// One chunk's way into a pack and back: keyed id, zstd when it shrinks, AES-256-GCM bound to the blob header.
// Pure functions of bytes and keys, so the backup's worker threads and the readers share them.
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { constants as zlibConstants, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { nativeHelperAvailable, zstdCompress, zstdDecompress } from '../native/index.ts';
import type { RepositoryKeys } from './keys.ts';

export const CHUNK_ID_BYTES = 32;
/** id (32) | flags (1) | 3 zero bytes | rawLength u32 | storedLength u32 */
export const BLOB_HEADER_BYTES = 48;
/** The part of the blob header bound into the ciphertext as AAD: id, flags, 3 zero bytes, rawLength. */
const AAD_BYTES = 40;
export const FLAG_COMPRESSED = 1;
// Level 1: on one 64 KiB chunk at a time, level 3 spends more setting up its larger tables than it gains
// (measured: same ratio on disk data, a quarter of the speed).
const ZSTD_LEVEL = 1;
/**
 * The native helper's zstd keeps one context per thread: node:zlib's one-shot calls set one up per chunk, which
 * cost more than the compression (about 0.2 ms a chunk). Both write standard frames, so either reads the other's.
 */
const nativeZstd = nativeHelperAvailable();

export interface EncodedChunk {
  id: Buffer;
  flags: number;
  rawLength: number;
  /** Header followed by the stored bytes: exactly what goes into the pack. */
  blob: Buffer;
}

export function chunkId(keys: RepositoryKeys, data: Buffer): Buffer {
  return createHmac('sha256', keys.idKey).update(data).digest();
}

/** Zeros to compare units against (memcmp through Buffer.equals is many times faster than a JS loop). */
const ZEROS = Buffer.alloc(64 * 1024);

export function isAllZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const end = Math.min(data.length, at + ZEROS.length);
    if (!data.subarray(at, end).equals(ZEROS.subarray(0, end - at))) return false;
  }
  return true;
}

function blobHeader(id: Buffer, flags: number, rawLength: number, storedLength: number): Buffer {
  const header = Buffer.alloc(BLOB_HEADER_BYTES);
  id.copy(header, 0);
  header[32] = flags;
  header.writeUInt32LE(rawLength, 36);
  header.writeUInt32LE(storedLength, 40);
  return header;
}

function aadOf(header: Buffer): Buffer {
  return header.subarray(0, AAD_BYTES);
}

export function encodeChunk(keys: RepositoryKeys, data: Buffer, knownId?: Buffer): EncodedChunk {
  const id = knownId ?? chunkId(keys, data);
  let flags = 0;
  let body = data;
  // Telling zstd the input size (and a window just big enough) sizes its tables for one chunk: without it, each
  // call sets up tables for large inputs and compressing a 64 KiB chunk is several times slower.
  const compressed = nativeZstd
    ? zstdCompress(data, ZSTD_LEVEL)
    : zstdCompressSync(data, {
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
  if (keys.encrypted) {
    const storedLength = 12 + body.length + 16;
    const header = blobHeader(id, flags, data.length, storedLength);
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', keys.dataKey, nonce);
    cipher.setAAD(aadOf(header));
    const parts = [header, nonce, cipher.update(body), cipher.final(), cipher.getAuthTag()];
    return {
      id,
      flags,
      rawLength: data.length,
      blob: Buffer.concat(parts, BLOB_HEADER_BYTES + storedLength),
    };
  }
  const header = blobHeader(id, flags, data.length, body.length);
  return { id, flags, rawLength: data.length, blob: Buffer.concat([header, body]) };
}

/** Thrown when a chunk's stored bytes fail authentication, decompression, length or id checks. */
export class DamagedChunkError extends Error {}

/**
 * Turns stored bytes back into the chunk. `header` is the blob header as read from the pack (its id, flags and
 * raw length are checked against `expectedId` and authenticated with the ciphertext). With `checkId`, the id is
 * recomputed from the plaintext (always done for unencrypted repositories, where it is the only integrity check).
 */
export function decodeChunk(
  keys: RepositoryKeys,
  header: Buffer,
  stored: Buffer,
  expectedId: Buffer,
  checkId = false,
): Buffer {
  const hex = expectedId.toString('hex').slice(0, 16);
  if (!header.subarray(0, 32).equals(expectedId))
    throw new DamagedChunkError(`chunk ${hex}: blob header names another chunk`);
  const flags = header[32]!;
  const rawLength = header.readUInt32LE(36);
  let body = stored;
  if (keys.encrypted) {
    if (stored.length < 28) throw new DamagedChunkError(`chunk ${hex}: stored bytes truncated`);
    const decipher = createDecipheriv('aes-256-gcm', keys.dataKey, stored.subarray(0, 12));
    decipher.setAAD(aadOf(header));
    decipher.setAuthTag(stored.subarray(stored.length - 16));
    try {
      const plain = decipher.update(stored.subarray(12, stored.length - 16));
      // GCM is a stream mode: final() only checks the tag and returns nothing, so no concatenating copy.
      const tail = decipher.final();
      body = tail.length === 0 ? plain : Buffer.concat([plain, tail]);
    } catch {
      throw new DamagedChunkError(`chunk ${hex}: fails authentication (pack bytes changed)`);
    }
  }
  let data = body;
  if (flags & FLAG_COMPRESSED) {
    try {
      data = nativeZstd ? zstdDecompress(body, rawLength) : zstdDecompressSync(body);
    } catch {
      throw new DamagedChunkError(`chunk ${hex}: does not decompress`);
    }
  }
  if (data.length !== rawLength)
    throw new DamagedChunkError(`chunk ${hex}: has ${data.length} bytes, expected ${rawLength}`);
  if ((checkId || !keys.encrypted) && !chunkId(keys, data).equals(expectedId)) {
    throw new DamagedChunkError(`chunk ${hex}: content does not match its id`);
  }
  return data;
}
