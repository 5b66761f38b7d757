// A Volume over a byte range of a BlockReader: how file-system readers see one partition.
import type { BlockReader } from '../device/types.ts';
import { type Volume, VolumeTruncatedError } from './types.ts';

export function partitionVolume(reader: BlockReader, start: number, size: number, name: string): Volume {
  const visible = Math.max(0, Math.min(size, reader.size - start));
  return {
    name,
    size: visible,
    async read(offset: number, length: number): Promise<Buffer> {
      if (offset < 0 || offset + length > visible) {
        throw new VolumeTruncatedError(
          `${name}: the file system refers to bytes ${offset}–${offset + length}, past the end of the ${visible}-byte ` +
            'partition; the partition or image is truncated or the file system is damaged',
        );
      }
      const data = await reader.read(start + offset, length);
      if (data.length < length) {
        throw new VolumeTruncatedError(
          `${name}: the device ended ${length - data.length} bytes short at byte ${offset}`,
        );
      }
      return data;
    },
  };
}
