// What a partition table says: where each partition lies and which bytes the table itself occupies.
import type { ByteRange } from '../device/types.ts';

export interface PartitionEntry {
  /** The number the OS gives it: GPT slot + 1; MBR primary 1–4, logical from 5 in chain order. */
  index: number;
  /** Absolute byte offset on the device. */
  start: number;
  size: number;
  /** GPT: the type GUID (upper case); MBR: the type byte as "0x83". */
  type: string;
  /** GPT partition name, if any. */
  name?: string;
  /** GPT unique partition GUID. */
  uuid?: string;
}

export interface PartitionTable {
  kind: 'gpt' | 'mbr' | 'none';
  sectorSize: number;
  /** Data partitions in index order (an MBR extended container is not one of them). */
  partitions: PartitionEntry[];
  /** Bytes the table's own structures occupy: MBR/protective MBR, GPT headers and entry arrays, EBRs. */
  tableRanges: ByteRange[];
  /** GPT: the disk GUID; MBR: the disk signature as hex. */
  diskId?: string;
  /** Problems that were worked around (e.g. a damaged primary GPT header, backup used). */
  warnings: string[];
}

/** The device's partition table is damaged beyond what Diskline can work around. */
export class PartitionTableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PartitionTableError';
  }
}
