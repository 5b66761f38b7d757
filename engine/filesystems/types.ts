// The one small interface every file-system reader implements: recognise the file system on a volume,
// then list the bytes its allocation metadata marks as used — never by looking at the data itself.
import { DamageError } from '../../protocol/failure.ts';
import type { ByteRange } from '../device/types.ts';

/** A partition (or a whole device) seen from inside: offsets start at 0 at the volume's first byte. */
export interface Volume {
  /** Names the volume in messages, e.g. "partition 2 of /dev/sdb". */
  readonly name: string;
  readonly size: number;
  /** Reads exactly `length` bytes at `offset` or throws VolumeTruncatedError if they lie past the end. */
  read(offset: number, length: number): Promise<Buffer>;
}

export interface UsedMap {
  /** e.g. "ext4", "fat32", "ntfs", "xfs", "btrfs", "swap". */
  filesystem: string;
  /** The file system's allocation unit (block or cluster) in bytes. */
  blockSize: number;
  /** Used bytes, volume-relative, sorted and merged. */
  usedRanges: ByteRange[];
  /** True when the map is "every block" because the allocation metadata could not be used. */
  allBlocks: boolean;
  label?: string;
  uuid?: string;
  warnings: string[];
}

export interface FilesystemReader {
  /** A family name: "ext", "fat", "ntfs", "xfs", "btrfs", "swap". */
  readonly family: string;
  /** Cheap signature check on the volume's first blocks. */
  detect(volume: Volume): Promise<boolean>;
  /** The used map; throws FilesystemDamagedError when the metadata contradicts itself. */
  usedMap(volume: Volume): Promise<UsedMap>;
}

/** The file system's metadata is damaged or truncated: its used map cannot be trusted. */
export class FilesystemDamagedError extends DamageError {
  constructor(message: string) {
    super(message);
    this.name = 'FilesystemDamagedError';
  }
}

/** A read past the end of a volume: the partition is smaller than its file system says (a truncated image). */
export class VolumeTruncatedError extends FilesystemDamagedError {
  constructor(message: string) {
    super(message);
    this.name = 'VolumeTruncatedError';
  }
}

/** The map of a volume whose every byte must be copied. */
export function allBlocksMap(
  filesystem: string,
  volume: Volume,
  blockSize: number,
  warning: string,
): UsedMap {
  return {
    filesystem,
    blockSize,
    usedRanges: volume.size > 0 ? [{ start: 0, length: volume.size }] : [],
    allBlocks: true,
    warnings: [warning],
  };
}
