// Linux swap areas: their content is meaningless after a reboot, so only the header page (signature,
// UUID and label, which fstab may name) is kept; the rest is skipped.
import type { FilesystemReader, UsedMap, Volume } from './types.ts';

const pageSizes = [4096, 8192, 16384, 65536];

async function swapPageSize(volume: Volume): Promise<number | null> {
  for (const pageSize of pageSizes) {
    if (volume.size < pageSize) break;
    const magic = (await volume.read(pageSize - 10, 10)).toString('latin1');
    if (magic === 'SWAPSPACE2' || magic === 'SWAP-SPACE') return pageSize;
  }
  return null;
}

export const swapReader: FilesystemReader = {
  family: 'swap',

  async detect(volume) {
    return (await swapPageSize(volume)) !== null;
  },

  async usedMap(volume): Promise<UsedMap> {
    const pageSize = (await swapPageSize(volume)) ?? 4096;
    const header = await volume.read(0, Math.min(pageSize, 1024 + 128));
    const uuid = header.length >= 1052 ? header.subarray(1036, 1052).toString('hex') : '';
    const label = header.length >= 1068 ? header.toString('latin1', 1052, 1068).replace(/\0.*$/s, '') : '';
    return {
      filesystem: 'swap',
      blockSize: pageSize,
      usedRanges: [{ start: 0, length: pageSize }],
      allBlocks: false,
      ...(uuid
        ? {
            uuid: `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`,
          }
        : {}),
      ...(label ? { label } : {}),
      warnings: [],
    };
  },
};
