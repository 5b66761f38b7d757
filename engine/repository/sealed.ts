// Sealed files: index files, manifests and prune records are compressed, then encrypted (AES-256-GCM) or,
// in an unencrypted repository, followed by an HMAC — so any damaged byte is detected on open. From format 3
// the check also covers the file's own name, so a file copied, renamed or swapped under another name (which
// needs no key) fails it like a damaged one.
import { createCipheriv, createDecipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import type { RepositoryKeys } from './keys.ts';

const CIPHER_SLICE_BYTES = 256 << 20;

/** A sealed file failed its check or has the wrong magic: the file is damaged (or from another repository). */
export class DamagedFileError extends Error {}

/**
 * What the seal covers besides the file's bytes: its magic, then (format 3) the name it is stored under as
 * u16le length | UTF-8 bytes. `boundName` null: format 2, the magic only.
 */
function associatedData(magic: string, boundName: string | null): Buffer {
  const head = Buffer.from(magic, 'ascii');
  if (boundName === null) return head;
  const name = Buffer.from(boundName, 'utf8');
  const length = Buffer.alloc(2);
  length.writeUInt16LE(name.length);
  return Buffer.concat([head, length, name]);
}

export function seal(
  keys: RepositoryKeys,
  magic: string,
  plaintext: Buffer,
  boundName: string | null,
): Buffer {
  const head = Buffer.from(magic, 'ascii');
  const aad = associatedData(magic, boundName);
  const packed = zstdCompressSync(plaintext);
  if (!keys.encrypted) {
    const mac = createHmac('sha256', keys.idKey).update(aad).update(packed).digest();
    return Buffer.concat([head, packed, mac]);
  }
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', keys.dataKey, nonce);
  cipher.setAAD(aad);
  const body = Buffer.concat([...inSlices(cipher, packed), cipher.final()]);
  return Buffer.concat([head, nonce, body, cipher.getAuthTag()]);
}

/** The cipher's output for `data`, fed in slices: one call takes at most 2 GiB (a big disk's manifest is more). */
function inSlices(cipher: { update(data: Buffer): Buffer }, data: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  for (let at = 0; at < data.length; at += CIPHER_SLICE_BYTES)
    parts.push(cipher.update(data.subarray(at, at + CIPHER_SLICE_BYTES)));
  return parts;
}

export function unseal(
  keys: RepositoryKeys,
  magic: string,
  file: Buffer,
  what: string,
  boundName: string | null,
): Buffer {
  const head = Buffer.from(magic, 'ascii');
  if (file.length < head.length + 32 || !file.subarray(0, head.length).equals(head)) {
    throw new DamagedFileError(`${what} is damaged: it does not start with ${magic}`);
  }
  const aad = associatedData(magic, boundName);
  // A file sealed under another name fails exactly as a changed one: the check cannot tell them apart.
  const how = boundName === null ? '' : ', or moved from another name';
  let packed: Buffer;
  if (!keys.encrypted) {
    packed = file.subarray(head.length, file.length - 32);
    const mac = createHmac('sha256', keys.idKey).update(aad).update(packed).digest();
    if (!timingSafeEqual(mac, file.subarray(file.length - 32))) {
      throw new DamagedFileError(`${what} is damaged: its checksum does not match (changed${how})`);
    }
  } else {
    try {
      const decipher = createDecipheriv(
        'aes-256-gcm',
        keys.dataKey,
        file.subarray(head.length, head.length + 12),
      );
      decipher.setAAD(aad);
      decipher.setAuthTag(file.subarray(file.length - 16));
      packed = Buffer.concat([
        ...inSlices(decipher, file.subarray(head.length + 12, file.length - 16)),
        decipher.final(),
      ]);
    } catch {
      throw new DamagedFileError(`${what} is damaged: it fails authentication (changed, truncated${how})`);
    }
  }
  try {
    return zstdDecompressSync(packed);
  } catch {
    throw new DamagedFileError(`${what} is damaged: its content does not decompress`);
  }
}
