// btrfs: recognised by its superblock; its used map is every block (with a warning) until the extent-tree
// walk lands, since a short map would lose data.
import { allBlocksMap, type FilesystemReader, type UsedMap, type Volume } from './types.ts';

const superblockOffset = 65536;

export const btrfsReader: FilesystemReader = {
  family: 'btrfs',

  async detect(volume) {
    if (volume.size < superblockOffset + 4096) return false;
    return (await volume.read(superblockOffset + 64, 8)).toString('latin1') === '_BHRfS_M';
  },

  async usedMap(volume: Volume): Promise<UsedMap> {
    const sb = await volume.read(superblockOffset, 4096);
    const sectorSize = sb.readUInt32LE(144);
    return {
      ...allBlocksMap(
        'btrfs',
        volume,
        sectorSize || 4096,
        `${volume.name}: btrfs allocation is not read yet; every block is copied`,
      ),
    };
  },
};
