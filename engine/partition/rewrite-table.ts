// Rewrites a restored disk's partition table for a new layout and disk size: the table the restore wrote at the
// disk's start is read back, each partition's entry gets its planned place, and a GPT gets a new backup entry
// array and header at the disk's (new) end with every CRC recomputed; everything else in the table (types,
// names, attributes, boot code) stays as it was. With `newIdentity` the disk and partition GUIDs (GPT) or the
// disk signature (MBR) are replaced by random ones.
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { BlockWriter } from '../device/types.ts';
import { formatGuid, parseGptHeader } from './gpt.ts';
import { mbrSlots } from './mbr.ts';
import { PartitionTableError } from './types.ts';

export interface PlacedPartition {
  index: number;
  start: number;
  size: number;
}

export interface TableRewrite {
  table: 'gpt' | 'mbr';
  sectorSize: number;
  /** Every partition's new place; a partition left out keeps its entry as it is. */
  partitions: PlacedPartition[];
  newIdentity?: boolean;
}

export interface RewrittenIdentity {
  /** Old → new, for every identifier that changed (GUIDs upper case, MBR signatures as 8 hex digits). */
  diskId?: { from: string; to: string };
  partitionIds: { index: number; from: string; to: string }[];
}

/** A random (version 4) GUID in GPT's on-disk byte order. */
function randomGuidBytes(): Buffer {
  const bytes = randomBytes(16);
  // Version 4 in the high nibble of field 3 (little-endian on disk: byte 7), variant 10 in byte 8.
  bytes[7] = (bytes[7]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return bytes;
}

function sealHeader(header: Buffer, headerSize: number): void {
  header.writeUInt32LE(0, 16);
  header.writeUInt32LE(crc32(header.subarray(0, headerSize)), 16);
}

/** Cylinder-head-sector of an LBA as an MBR slot stores it (1023/254/63 when past what CHS can say). */
function chs(lba: number): Buffer {
  const heads = 255;
  const sectors = 63;
  const cylinder = Math.floor(lba / (heads * sectors));
  if (cylinder > 1023) return Buffer.from([0xfe, 0xff, 0xff]);
  const head = Math.floor(lba / sectors) % heads;
  const sector = (lba % sectors) + 1;
  return Buffer.from([head, ((cylinder >> 2) & 0xc0) | sector, cylinder & 0xff]);
}

async function rewriteGpt(
  writer: BlockWriter,
  rewrite: TableRewrite,
  identity: RewrittenIdentity,
): Promise<void> {
  const { sectorSize } = rewrite;
  const headerSector = await writer.read(sectorSize, sectorSize);
  const header = parseGptHeader(headerSector, 1n);
  if (typeof header === 'string') {
    throw new PartitionTableError(
      `the restored GPT header on ${writer.path} is not valid (${header}); the partition table was not rewritten`,
    );
  }
  const entryBytes = header.entryCount * header.entrySize;
  const entries = Buffer.from(await writer.read(Number(header.entriesLba) * sectorSize, entryBytes));
  if (crc32(entries) !== header.entriesCrc) {
    throw new PartitionTableError(`the restored GPT entry array on ${writer.path} does not match its CRC32`);
  }
  const lastLba = BigInt(Math.floor(writer.size / sectorSize) - 1);
  const entrySectors = BigInt(Math.ceil(entryBytes / sectorSize));
  const backupEntriesLba = lastLba - entrySectors;
  const lastUsableLba = backupEntriesLba - 1n;
  for (const placed of rewrite.partitions) {
    const at = (placed.index - 1) * header.entrySize;
    if (
      placed.index < 1 ||
      placed.index > header.entryCount ||
      entries.subarray(at, at + 16).every((b) => b === 0)
    ) {
      throw new PartitionTableError(`the restored GPT on ${writer.path} has no partition ${placed.index}`);
    }
    const first = BigInt(placed.start / sectorSize);
    const last = BigInt((placed.start + placed.size) / sectorSize) - 1n;
    if (first < header.firstUsableLba || last > lastUsableLba) {
      throw new PartitionTableError(
        `partition ${placed.index} (LBA ${first}–${last}) does not fit the usable LBAs ${header.firstUsableLba}–${lastUsableLba} of ${writer.path}`,
      );
    }
    entries.writeBigUInt64LE(first, at + 32);
    entries.writeBigUInt64LE(last, at + 40);
  }
  if (rewrite.newIdentity) {
    for (let slot = 0; slot < header.entryCount; slot++) {
      const at = slot * header.entrySize;
      if (entries.subarray(at, at + 16).every((b) => b === 0)) continue;
      const fresh = randomGuidBytes();
      identity.partitionIds.push({
        index: slot + 1,
        from: formatGuid(entries.subarray(at + 16, at + 32)),
        to: formatGuid(fresh),
      });
      fresh.copy(entries, at + 16);
    }
  }
  const headerSize = headerSector.readUInt32LE(12);
  const primary = Buffer.from(headerSector);
  if (rewrite.newIdentity) {
    const fresh = randomGuidBytes();
    identity.diskId = { from: formatGuid(primary.subarray(56, 72)), to: formatGuid(fresh) };
    fresh.copy(primary, 56);
  }
  primary.writeBigUInt64LE(lastLba, 32);
  primary.writeBigUInt64LE(lastUsableLba, 48);
  primary.writeUInt32LE(crc32(entries), 88);
  const backup = Buffer.from(primary);
  sealHeader(primary, headerSize);
  backup.writeBigUInt64LE(lastLba, 24);
  backup.writeBigUInt64LE(1n, 32);
  backup.writeBigUInt64LE(backupEntriesLba, 72);
  sealHeader(backup, headerSize);
  // The old backup header, when it now lies inside the disk, would be found by a tool looking for a second table.
  const oldBackupOffset = Number(header.alternateLba) * sectorSize;
  if (header.alternateLba !== lastLba && oldBackupOffset + sectorSize <= writer.size) {
    const old = await writer.read(oldBackupOffset, sectorSize);
    if (old.toString('latin1', 0, 8) === 'EFI PART')
      await writer.write(oldBackupOffset, Buffer.alloc(sectorSize));
  }
  // Backup first, primary last: until the primary is written, the old table is what a reader trusts.
  await writer.write(Number(backupEntriesLba) * sectorSize, entries);
  await writer.write(Number(lastLba) * sectorSize, backup);
  await writer.write(Number(header.entriesLba) * sectorSize, entries);
  await writer.write(sectorSize, primary);
  // The protective MBR covers the whole disk (or as much as 32 bits of sectors can say).
  const mbr = Buffer.from(await writer.read(0, 512));
  const slots = mbrSlots(mbr);
  const protective = slots.findIndex((slot) => slot.type === 0xee);
  if (protective >= 0) {
    const sectors = Math.min(Number(lastLba), 0xffffffff);
    mbr.writeUInt32LE(sectors, 446 + protective * 16 + 12);
    chs(Math.min(Number(lastLba), 0xffffffff)).copy(mbr, 446 + protective * 16 + 5);
    await writer.write(0, mbr);
  }
}

async function rewriteMbr(
  writer: BlockWriter,
  rewrite: TableRewrite,
  identity: RewrittenIdentity,
): Promise<void> {
  const mbr = Buffer.from(await writer.read(0, 512));
  if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) {
    throw new PartitionTableError(`the restored MBR on ${writer.path} has no boot signature`);
  }
  const slots = mbrSlots(mbr);
  const extendedSlot = slots.findIndex((slot) => EXTENDED_TYPES.has(slot.type));
  const logicalEnds: number[] = [];
  let logicalChanged = false;
  for (const placed of rewrite.partitions) {
    if (placed.index >= 5) {
      const { end, changed } = await placeLogical(writer, slots[extendedSlot], placed);
      logicalEnds.push(end);
      logicalChanged ||= changed;
      continue;
    }
    const slot = slots[placed.index - 1];
    if (!slot || slot.type === 0) {
      throw new PartitionTableError(
        `partition ${placed.index} is not a primary partition of the MBR on ${writer.path}; only primary partitions are rewritten`,
      );
    }
    const at = 446 + (placed.index - 1) * 16;
    const first = placed.start / 512;
    const sectors = placed.size / 512;
    if (placed.start + placed.size > writer.size) {
      throw new PartitionTableError(`partition ${placed.index} would end past the end of ${writer.path}`);
    }
    mbr.writeUInt32LE(first, at + 8);
    mbr.writeUInt32LE(sectors, at + 12);
    chs(first).copy(mbr, at + 1);
    chs(first + sectors - 1).copy(mbr, at + 5);
  }
  // The extended partition ends where its last logical partition now ends.
  if (extendedSlot >= 0 && logicalChanged) {
    const at = 446 + extendedSlot * 16;
    const first = mbr.readUInt32LE(at + 8);
    const sectors = Math.max(...logicalEnds) / 512 - first;
    mbr.writeUInt32LE(sectors, at + 12);
    chs(first + sectors - 1).copy(mbr, at + 5);
  }
  if (rewrite.newIdentity) {
    const from = mbr.readUInt32LE(440).toString(16).padStart(8, '0');
    let fresh = 0;
    while (fresh === 0) fresh = randomBytes(4).readUInt32LE(0);
    mbr.writeUInt32LE(fresh, 440);
    identity.diskId = { from, to: fresh.toString(16).padStart(8, '0') };
  }
  await writer.write(0, mbr);
}

const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);

/**
 * Gives logical partition `placed.index` its new size in its extended boot record (found by walking the chain
 * from the extended partition); returns where it now ends, in bytes, and whether its size changed. Its start
 * does not move.
 */
async function placeLogical(
  writer: BlockWriter,
  extended: ReturnType<typeof mbrSlots>[number] | undefined,
  placed: PlacedPartition,
): Promise<{ end: number; changed: boolean }> {
  if (!extended)
    throw new PartitionTableError(
      `the MBR on ${writer.path} has no extended partition for partition ${placed.index}`,
    );
  let ebrLba = extended.firstLba;
  for (let index = 5; index <= 260; index++) {
    const ebr = Buffer.from(await writer.read(ebrLba * 512, 512));
    if (ebr[510] !== 0x55 || ebr[511] !== 0xaa) break;
    const [logical, next] = mbrSlots(ebr);
    if (index === placed.index && logical && logical.type !== 0) {
      const first = ebrLba + logical.firstLba;
      if (first * 512 !== placed.start) {
        throw new PartitionTableError(
          `logical partition ${placed.index} on ${writer.path} cannot move (from LBA ${first})`,
        );
      }
      const sectors = placed.size / 512;
      if (logical.sectors === sectors) return { end: placed.start + placed.size, changed: false };
      ebr.writeUInt32LE(sectors, 446 + 12);
      chs(first + sectors - 1).copy(ebr, 446 + 5);
      await writer.write(ebrLba * 512, ebr);
      return { end: placed.start + placed.size, changed: true };
    }
    if (!next || !EXTENDED_TYPES.has(next.type)) break;
    ebrLba = extended.firstLba + next.firstLba;
  }
  throw new PartitionTableError(`the MBR on ${writer.path} has no logical partition ${placed.index}`);
}

/** Rewrites the table on `writer` (the restored disk) for the new layout; returns the identifiers it changed. */
export async function rewritePartitionTable(
  writer: BlockWriter,
  rewrite: TableRewrite,
): Promise<RewrittenIdentity> {
  const identity: RewrittenIdentity = { partitionIds: [] };
  if (rewrite.table === 'gpt') await rewriteGpt(writer, rewrite, identity);
  else await rewriteMbr(writer, rewrite, identity);
  await writer.flush();
  return identity;
}
