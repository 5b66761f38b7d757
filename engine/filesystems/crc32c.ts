// CRC32C (Castagnoli), which ext4 (metadata_csum), XFS v5 and btrfs use for their metadata; node:zlib only
// has the IEEE CRC32. `crc32cUpdate` is the raw register step (no inversions), as the Linux crc32c() is.
const table = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
  table[n] = c >>> 0;
}

/** Continues a CRC32C register over `data` without pre- or post-inversion (Linux's crc32c(seed, data)). */
export function crc32cUpdate(seed: number, data: Uint8Array): number {
  let crc = seed >>> 0;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return crc >>> 0;
}

/** The standard CRC32C of `data` (initial ~0, final inversion). */
export function crc32c(data: Uint8Array): number {
  return ~crc32cUpdate(0xffffffff, data) >>> 0;
}
