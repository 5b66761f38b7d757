// GUID Partition Table: primary header at LBA 1 and backup header at the last LBA, each with its own CRC32
// and the CRC32 of its entry array. A damaged primary falls back to the backup with a warning; both damaged
// is an error naming the device.
import { crc32 } from 'node:zlib';
import type { BlockReader, ByteRange } from '../device/types.ts';
import { type PartitionEntry, type PartitionTable, PartitionTableError } from './types.ts';

const signature = 'EFI PART';
/** Entry arrays larger than this are not real tables (spec minimum is 16 KiB; tools use 16–32 KiB). */
const maxEntryArrayBytes = 4 * 1024 * 1024;

export interface GptHeader {
  myLba: bigint;
  alternateLba: bigint;
  firstUsableLba: bigint;
  lastUsableLba: bigint;
  diskGuid: string;
  entriesLba: bigint;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
}

/** Mixed-endian GUID text as tools print it (first three fields little-endian). */
export function formatGuid(bytes: Buffer): string {
  const hex = (b: Buffer) => b.toString('hex');
  const le = (b: Buffer) => hex(Buffer.from(b).reverse());
  return [
    le(bytes.subarray(0, 4)),
    le(bytes.subarray(4, 6)),
    le(bytes.subarray(6, 8)),
    hex(bytes.subarray(8, 10)),
    hex(bytes.subarray(10, 16)),
  ]
    .join('-')
    .toUpperCase();
}

/** Parses and checks a header sector; returns the header or why it is not valid. */
export function parseGptHeader(sector: Buffer, expectedLba: bigint): GptHeader | string {
  if (sector.length < 92 || sector.toString('latin1', 0, 8) !== signature) return 'no "EFI PART" signature';
  const headerSize = sector.readUInt32LE(12);
  if (headerSize < 92 || headerSize > sector.length) return `implausible header size ${headerSize}`;
  const stored = sector.readUInt32LE(16);
  const copy = Buffer.from(sector.subarray(0, headerSize));
  copy.writeUInt32LE(0, 16);
  if (crc32(copy) !== stored) return 'header CRC32 mismatch';
  const myLba = sector.readBigUInt64LE(24);
  if (myLba !== expectedLba) return `header says it is at LBA ${myLba}, found at LBA ${expectedLba}`;
  const entryCount = sector.readUInt32LE(80);
  const entrySize = sector.readUInt32LE(84);
  if (entrySize < 128 || entrySize % 8 !== 0 || entryCount * entrySize > maxEntryArrayBytes) {
    return `implausible entry array (${entryCount} entries of ${entrySize} bytes)`;
  }
  return {
    myLba,
    alternateLba: sector.readBigUInt64LE(32),
    firstUsableLba: sector.readBigUInt64LE(40),
    lastUsableLba: sector.readBigUInt64LE(48),
    diskGuid: formatGuid(sector.subarray(56, 72)),
    entriesLba: sector.readBigUInt64LE(72),
    entryCount,
    entrySize,
    entriesCrc: sector.readUInt32LE(88),
  };
}

interface ValidGpt {
  header: GptHeader;
  entries: Buffer;
}

async function readGptAt(reader: BlockReader, lba: bigint, sectorSize: number): Promise<ValidGpt | string> {
  const offset = Number(lba) * sectorSize;
  if (lba <= 0n || offset + sectorSize > reader.size) return `LBA ${lba} is outside the device`;
  const header = parseGptHeader(await reader.read(offset, sectorSize), lba);
  if (typeof header === 'string') return header;
  const entriesBytes = header.entryCount * header.entrySize;
  const entriesOffset = Number(header.entriesLba) * sectorSize;
  if (entriesOffset + entriesBytes > reader.size) return 'entry array lies outside the device';
  const entries = await reader.read(entriesOffset, entriesBytes);
  if (crc32(entries) !== header.entriesCrc) return 'entry array CRC32 mismatch';
  return { header, entries };
}

function entriesOf(gpt: ValidGpt, sectorSize: number, deviceSize: number, path: string): PartitionEntry[] {
  const partitions: PartitionEntry[] = [];
  const { header, entries } = gpt;
  for (let slot = 0; slot < header.entryCount; slot++) {
    const entry = entries.subarray(slot * header.entrySize, (slot + 1) * header.entrySize);
    const typeBytes = entry.subarray(0, 16);
    if (typeBytes.every((b) => b === 0)) continue;
    const firstLba = entry.readBigUInt64LE(32);
    const lastLba = entry.readBigUInt64LE(40);
    const start = Number(firstLba) * sectorSize;
    const end = (Number(lastLba) + 1) * sectorSize;
    if (lastLba < firstLba || end > deviceSize) {
      throw new PartitionTableError(
        `GPT partition ${slot + 1} on ${path} spans LBA ${firstLba}–${lastLba}, outside the ${deviceSize}-byte device; ` +
          'the table is damaged or the image is truncated',
      );
    }
    const name = entry.toString('utf16le', 56, Math.min(128, header.entrySize)).replace(/\0.*$/s, '');
    partitions.push({
      index: slot + 1,
      start,
      size: end - start,
      type: formatGuid(typeBytes),
      uuid: formatGuid(entry.subarray(16, 32)),
      ...(name ? { name } : {}),
    });
  }
  return partitions.sort((a, b) => a.index - b.index);
}

function structureRanges(header: GptHeader, sectorSize: number): ByteRange[] {
  const entriesBytes = Math.ceil((header.entryCount * header.entrySize) / sectorSize) * sectorSize;
  return [
    { start: Number(header.myLba) * sectorSize, length: sectorSize },
    { start: Number(header.entriesLba) * sectorSize, length: entriesBytes },
  ];
}

/** Reads the GPT of a device whose LBA 1 (at `sectorSize`) or last LBA holds a GPT header. */
export async function readGpt(reader: BlockReader, sectorSize: number): Promise<PartitionTable> {
  const warnings: string[] = [];
  const lastLba = BigInt(Math.floor(reader.size / sectorSize) - 1);
  const primary = await readGptAt(reader, 1n, sectorSize);
  let backup: ValidGpt | string;
  if (typeof primary !== 'string') {
    backup = await readGptAt(reader, primary.header.alternateLba, sectorSize);
    if (typeof backup === 'string' && primary.header.alternateLba !== lastLba) {
      backup = await readGptAt(reader, lastLba, sectorSize);
    }
    if (typeof backup === 'string') {
      warnings.push(
        `the backup GPT header of ${reader.path} (LBA ${primary.header.alternateLba}) is not valid (${backup}); ` +
          'the primary is intact and was used — repair the backup with a partitioning tool',
      );
    }
  } else {
    backup = await readGptAt(reader, lastLba, sectorSize);
    if (typeof backup === 'string') {
      throw new PartitionTableError(
        `no valid GPT on ${reader.path}: primary header (LBA 1): ${primary}; backup header (LBA ${lastLba}): ${backup}. ` +
          'The partition table is damaged; repair it (e.g. with gdisk) before backing up',
      );
    }
    warnings.push(
      `the primary GPT header of ${reader.path} is damaged (${primary}); the backup header at LBA ${lastLba} was used`,
    );
  }
  const used = typeof primary !== 'string' ? primary : (backup as ValidGpt);
  // Everything before the first usable LBA (protective MBR, primary header and entries) and after the last one
  // (backup entries and header) belongs to the table, whatever state each copy is in.
  const { firstUsableLba, lastUsableLba } = used.header;
  const backupEnd = typeof backup !== 'string' ? backup.header.myLba : lastLba;
  const tableRanges: ByteRange[] = [{ start: 0, length: Number(firstUsableLba) * sectorSize }];
  if (backupEnd > lastUsableLba) {
    tableRanges.push({
      start: (Number(lastUsableLba) + 1) * sectorSize,
      length: Number(backupEnd - lastUsableLba) * sectorSize,
    });
  }
  for (const gpt of [primary, backup]) {
    if (typeof gpt !== 'string') tableRanges.push(...structureRanges(gpt.header, sectorSize));
  }
  return {
    kind: 'gpt',
    sectorSize,
    partitions: entriesOf(used, sectorSize, reader.size, reader.path),
    tableRanges,
    diskId: used.header.diskGuid,
    warnings,
  };
}
