// The format's write limits on counts: groups a pack and entries an index file hold at most (chunks per group are
// bounded by bytes, MAX_GROUP_BYTES in chunk-codec.ts). Writers split when a limit is reached (a new pack or
// index file), never fail; readers accept any count the file's fields can hold. Tests shrink the limits to reach
// them with small images. See docs/repository-format.md, "Limits".

import { UNITS_PER_SEGMENT } from './segment.ts';

/** Groups a pack holds at most; a pack of extremely compressible data fills up by count before bytes. */
export const MAX_GROUPS_PER_PACK = 16_384;
/** Entries (64 bytes each) an index file holds at most: 16 MiB of plaintext. */
export const MAX_INDEX_FILE_ENTRIES = 262_144;

export interface WriteLimits {
  /** A pack is closed once it holds this many groups (or its bytes reach the repository's pack size). */
  groupsPerPack: number;
  /** Index entries are written in files of at most this many. */
  entriesPerIndexFile: number;
  /** Units per map segment of a new point without a parent (tests use a few, to reach many segments). */
  unitsPerSegment: number;
}

export const DEFAULT_WRITE_LIMITS: WriteLimits = {
  groupsPerPack: MAX_GROUPS_PER_PACK,
  entriesPerIndexFile: MAX_INDEX_FILE_ENTRIES,
  unitsPerSegment: UNITS_PER_SEGMENT,
};

/** The defaults with a test's smaller limits; a limit below 1 is refused (it could never be met). */
export function writeLimits(overrides: Partial<WriteLimits> = {}): WriteLimits {
  const limits = { ...DEFAULT_WRITE_LIMITS, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1)
      throw new Error(`write limit ${name} must be at least 1, not ${value}`);
  }
  return limits;
}
