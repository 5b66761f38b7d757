// A volume over bytes in memory, for tests that damage a file system's image and read its map again without
// writing a file or attaching a loop device each time.
import type { ByteRange } from '../../device/types.ts';
import { type Volume, VolumeTruncatedError } from '../types.ts';

/** A volume over `bytes` (read live, so damage done to them shows); `reads` (when given) records every range read. */
export function memoryVolume(bytes: Buffer, name: string, reads?: ByteRange[]): Volume {
  return {
    name,
    size: bytes.length,
    async read(offset, length) {
      if (offset < 0 || offset + length > bytes.length) {
        throw new VolumeTruncatedError(`${name}: read of ${length} bytes at ${offset} is past the end`);
      }
      reads?.push({ start: offset, length });
      return Buffer.from(bytes.subarray(offset, offset + length));
    },
  };
}
