// Finds which partition table a device has (GPT behind a protective MBR, MBR, or none) and reads it.
// No table (or only an empty MBR) means one partition covering the whole device.
import type { BlockReader } from '../device/types.ts';
import { readGpt } from './gpt.ts';
import { hasBootSignature, looksLikeMbr, mbrSlots, readMbr } from './mbr.ts';
import type { PartitionTable } from './types.ts';

const gptProtectiveType = 0xee;

async function gptSignatureAt(reader: BlockReader, offset: number): Promise<boolean> {
  if (offset + 8 > reader.size) return false;
  return (await reader.read(offset, 8)).toString('latin1') === 'EFI PART';
}

/** The whole device as one partition, for a device without a partition table. */
export function wholeDeviceTable(reader: BlockReader, warnings: string[] = []): PartitionTable {
  return {
    kind: 'none',
    sectorSize: reader.logicalSectorSize,
    partitions: [{ index: 1, start: 0, size: reader.size, type: 'none' }],
    tableRanges: [],
    warnings,
  };
}

/** Reads the device's partition table. Throws PartitionTableError when a table exists but cannot be trusted. */
export async function readPartitionTable(reader: BlockReader): Promise<PartitionTable> {
  if (reader.size < 512) return wholeDeviceTable(reader);
  const sector0 = await reader.read(0, 512);
  const protective =
    hasBootSignature(sector0) && mbrSlots(sector0).some((slot) => slot.type === gptProtectiveType);
  if (protective) {
    // A 4Kn disk (or an image of one) has the header at byte 4096; try the device's own sector size first.
    const sizes = [...new Set([reader.logicalSectorSize, 512, 4096])];
    for (const sectorSize of sizes) {
      if ((await gptSignatureAt(reader, sectorSize)) || (await backupGptSignature(reader, sectorSize))) {
        return readGpt(reader, sectorSize);
      }
    }
    // The protective MBR promises a GPT that neither copy of the header shows: let readGpt report both.
    return readGpt(reader, reader.logicalSectorSize);
  }
  // A FAT or NTFS volume written to the whole device ("superfloppy") also ends its first sector in 55 AA;
  // its boot sector's own fields say so, and then there is no table.
  if (looksLikeMbr(sector0) && !isVolumeBootSector(sector0, reader.size)) {
    return readMbr(reader);
  }
  return wholeDeviceTable(reader);
}

/** True when sector 0 is an NTFS or FAT boot sector describing a volume that fits the device. */
function isVolumeBootSector(sector0: Buffer, deviceSize: number): boolean {
  if (sector0.toString('latin1', 3, 11) === 'NTFS    ') return true;
  if (sector0[0] !== 0xeb && sector0[0] !== 0xe9) return false;
  const bytesPerSector = sector0.readUInt16LE(11);
  const sectorsPerCluster = sector0[13]!;
  const totalSectors = sector0.readUInt16LE(19) || sector0.readUInt32LE(32);
  const validGeometry =
    [512, 1024, 2048, 4096].includes(bytesPerSector) &&
    sectorsPerCluster > 0 &&
    (sectorsPerCluster & (sectorsPerCluster - 1)) === 0 &&
    sector0.readUInt16LE(14) > 0 &&
    sector0[16]! > 0;
  return validGeometry && totalSectors > 0 && totalSectors * bytesPerSector <= deviceSize;
}

async function backupGptSignature(reader: BlockReader, sectorSize: number): Promise<boolean> {
  const lastLbaOffset = (Math.floor(reader.size / sectorSize) - 1) * sectorSize;
  return gptSignatureAt(reader, lastLbaOffset);
}
