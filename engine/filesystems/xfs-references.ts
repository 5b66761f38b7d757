// XFS keeps its free space twice in each allocation group — the by-block B+tree the used map is read from, and
// the by-size B+tree — and counts it a third time in the AGF. Without the reverse-mapping tree (not made by
// default) these are the cheap records to hold the map against: all three must agree, or the map is not trusted.
// Both trees carry v5 checksums, so this catches a lie that is checksum-valid (a bug, a crafted image), not bit rot.
import type { MapCrossCheck } from './map-check.ts';
import { FilesystemDamagedError } from './types.ts';
import { cntMagics, freeExtents, xfsGeometry } from './xfs.ts';

const blocksIn = (extents: { length: number }[]) => extents.reduce((sum, e) => sum + e.length, 0);

export const xfsCrossCheck: MapCrossCheck = {
  allocationRecord: 'the by-block free-space trees',
  repairTool: 'xfs_repair',

  async run(volume) {
    const geo = xfsGeometry(await volume.read(0, 512));
    if (!geo) throw new FilesystemDamagedError(`${volume.name}: the XFS superblock is not valid`);
    for (let ag = 0; ag < geo.agCount; ag++) {
      // The AGF was checked (magic, number, checksum) when the map was read.
      const agf = await volume.read(ag * geo.agBlocks * geo.blockSize + geo.sectorSize, geo.sectorSize);
      const byBlock = blocksIn(
        await freeExtents(volume, geo, ag, agf.readUInt32BE(16), agf.readUInt32BE(28)),
      );
      const bySize = blocksIn(
        await freeExtents(volume, geo, ag, agf.readUInt32BE(20), agf.readUInt32BE(32), cntMagics),
      );
      const counted = agf.readUInt32BE(52);
      if (byBlock !== bySize || byBlock !== counted) {
        throw new FilesystemDamagedError(
          `${volume.name}: allocation group ${ag}'s free-space records disagree (the by-block tree frees ` +
            `${byBlock} blocks, the by-size tree ${bySize}, the AGF counts ${counted}), so the used map read from ` +
            'them cannot be trusted; run xfs_repair on it',
        );
      }
    }
  },
};
