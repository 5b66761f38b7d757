// Master Boot Record partition tables: four primary slots at byte 446, extended partitions holding a
// chain of EBRs (each with one logical partition and a link to the next), logical partitions numbered from 5.
import type { BlockReader, ByteRange } from '../device/types.ts';
import { type PartitionEntry, type PartitionTable, PartitionTableError } from './types.ts';

const extendedTypes = new Set([0x05, 0x0f, 0x85]);
/** The kernel stops at this many logical partitions; so does Diskline (and it bounds a looping chain). */
const maxLogical = 256;

export interface MbrSlot {
  status: number;
  type: number;
  /** LBA of the start, relative to whatever the slot is relative to. */
  firstLba: number;
  sectors: number;
}

export function hasBootSignature(sector0: Buffer): boolean {
  return sector0.length >= 512 && sector0[510] === 0x55 && sector0[511] === 0xaa;
}

export function mbrSlots(sector: Buffer): MbrSlot[] {
  const slots: MbrSlot[] = [];
  for (let i = 0; i < 4; i++) {
    const at = 446 + i * 16;
    slots.push({
      status: sector[at]!,
      type: sector[at + 4]!,
      firstLba: sector.readUInt32LE(at + 8),
      sectors: sector.readUInt32LE(at + 12),
    });
  }
  return slots;
}

/**
 * True when the four slots look like a partition table: every status byte 0x00 or 0x80, every used slot
 * starts after LBA 0 and has sectors, and at least one slot is used. A FAT or NTFS boot sector has code or
 * text there and fails this.
 */
export function looksLikeMbr(sector0: Buffer): boolean {
  if (!hasBootSignature(sector0)) return false;
  const slots = mbrSlots(sector0);
  let used = 0;
  for (const slot of slots) {
    if (slot.status !== 0 && slot.status !== 0x80) return false;
    if (slot.type === 0) continue;
    // A start past the end is not a reason to doubt the table: readMbr reports it (a truncated image).
    if (slot.firstLba === 0 || slot.sectors === 0) return false;
    used++;
  }
  return used > 0;
}

const typeText = (type: number) => `0x${type.toString(16).padStart(2, '0')}`;

/** Reads an MBR table (sector size 512) with its logical partitions. */
export async function readMbr(reader: BlockReader): Promise<PartitionTable> {
  const sectorSize = 512;
  const sector0 = await reader.read(0, sectorSize);
  const warnings: string[] = [];
  const partitions: PartitionEntry[] = [];
  const tableRanges: ByteRange[] = [{ start: 0, length: sectorSize }];
  const deviceEnd = reader.size;
  const place = (index: number, firstLba: number, sectors: number, type: number, what: string) => {
    const start = firstLba * sectorSize;
    let size = sectors * sectorSize;
    if (start >= deviceEnd) {
      throw new PartitionTableError(
        `${what} on ${reader.path} starts at byte ${start}, beyond the ${deviceEnd}-byte device; ` +
          'the table is damaged or the image is truncated',
      );
    }
    if (start + size > deviceEnd) {
      warnings.push(
        `${what} on ${reader.path} runs ${start + size - deviceEnd} bytes past the end of the device; ` +
          'only the part on the device is read',
      );
      size = deviceEnd - start;
    }
    partitions.push({ index, start, size, type: typeText(type) });
  };
  let extended: MbrSlot | null = null;
  for (const [i, slot] of mbrSlots(sector0).entries()) {
    if (slot.type === 0 || slot.sectors === 0) continue;
    if (extendedTypes.has(slot.type)) {
      if (extended)
        warnings.push(`${reader.path} has more than one extended partition; only the first is read`);
      else extended = slot;
      continue;
    }
    place(i + 1, slot.firstLba, slot.sectors, slot.type, `partition ${i + 1}`);
  }
  if (extended) {
    const extendedStart = extended.firstLba;
    const seen = new Set<number>();
    let ebrLba = extendedStart;
    let index = 5;
    while (true) {
      if (seen.has(ebrLba) || seen.size >= maxLogical) {
        warnings.push(
          `the chain of logical partitions on ${reader.path} loops or is too long; stopped at ${index - 1}`,
        );
        break;
      }
      seen.add(ebrLba);
      if ((ebrLba + 1) * sectorSize > deviceEnd) {
        throw new PartitionTableError(
          `the extended boot record for partition ${index} on ${reader.path} lies at LBA ${ebrLba}, beyond the device; ` +
            'the table is damaged or the image is truncated',
        );
      }
      const ebr = await reader.read(ebrLba * sectorSize, sectorSize);
      tableRanges.push({ start: ebrLba * sectorSize, length: sectorSize });
      if (!hasBootSignature(ebr)) {
        // An empty extended partition has a zeroed first EBR; anywhere else a missing signature is damage.
        if (ebrLba !== extendedStart) {
          warnings.push(
            `the extended boot record at LBA ${ebrLba} on ${reader.path} has no signature; chain ends`,
          );
        }
        break;
      }
      const [logical, next] = mbrSlots(ebr);
      if (logical && logical.type !== 0 && logical.sectors !== 0) {
        place(index, ebrLba + logical.firstLba, logical.sectors, logical.type, `logical partition ${index}`);
        index++;
      }
      if (!next || next.type === 0 || next.sectors === 0 || !extendedTypes.has(next.type)) break;
      ebrLba = extendedStart + next.firstLba;
    }
  }
  return {
    kind: 'mbr',
    sectorSize,
    partitions: partitions.sort((a, b) => a.index - b.index),
    tableRanges,
    diskId: sector0.readUInt32LE(440).toString(16).padStart(8, '0'),
    warnings,
  };
}
