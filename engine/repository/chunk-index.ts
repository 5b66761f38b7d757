// The index: where each chunk is stored (its group blob in a pack, and its place among the group's plain bytes).
// In memory it is a map from chunk id; on disk it is the union of sealed index files of 64-byte entries, minus
// the packs a prune has condemned.

export const INDEX_MAGIC = 'DLINDEX2';
const ENTRY_BYTES = 64;
/** The most an index file may hold: 64 Mi entries (a prune writes all live ones into one file), 4 GiB. */
export const INDEX_FILE_MAX_BYTES = 4 * 1024 * 1024 * 1024;

export interface IndexEntry {
  /** hex */
  pack: string;
  /** Where the chunk's group blob starts in the pack, and its whole length (header, members, stored bytes). */
  blobOffset: number;
  blobLength: number;
  /** Where the chunk lies in the group's plain bytes. */
  rawOffset: number;
  rawLength: number;
}

/** Chunk id (32 bytes) as a map key. */
export function idKey(id: Buffer): string {
  return id.toString('base64');
}

export class ChunkIndex {
  /** Entries of live packs: what a backup deduplicates against. */
  readonly entries = new Map<string, IndexEntry>();
  /**
   * Entries of packs a prune has condemned, kept for reading only: a backup that started before the prune may
   * have committed a point using them (prune rescues those packs before it deletes any); such a point must
   * restore meanwhile. New backups never deduplicate against them.
   */
  readonly condemned = new Map<string, IndexEntry>();

  get size(): number {
    return this.entries.size;
  }

  /** Whether a backup may reference the chunk without storing it (live packs only). */
  has(id: Buffer): boolean {
    return this.entries.has(idKey(id));
  }

  /** Where to read the chunk: a live pack, else a condemned one not deleted yet. */
  get(id: Buffer): IndexEntry | undefined {
    const key = idKey(id);
    return this.entries.get(key) ?? this.condemned.get(key);
  }

  set(id: Buffer, entry: IndexEntry): void {
    this.entries.set(idKey(id), entry);
  }

  /** Adds every entry of a decoded index file; those of packs in `condemnedPacks` for reading only. */
  addFile(plaintext: Buffer, condemnedPacks: Set<string>): void {
    for (const [key, entry] of decodeIndexEntries(plaintext)) {
      if (!condemnedPacks.has(entry.pack)) this.entries.set(key, entry);
      else this.condemned.set(key, entry);
    }
  }

  packs(): Set<string> {
    const packs = new Set<string>();
    for (const entry of this.entries.values()) packs.add(entry.pack);
    return packs;
  }
}

/** The index file plaintext of `entries[from..to)` (a slice of the list, not a copy of it). */
export function encodeIndexEntries(
  entries: readonly [string, IndexEntry][],
  from = 0,
  to = entries.length,
): Buffer {
  const out = Buffer.alloc((to - from) * ENTRY_BYTES);
  for (let i = from; i < to; i++) {
    const [key, entry] = entries[i]!;
    const at = (i - from) * ENTRY_BYTES;
    out.write(key, at, 32, 'base64');
    out.write(entry.pack, at + 32, 16, 'hex');
    out.writeUInt32LE(entry.blobOffset, at + 48);
    out.writeUInt32LE(entry.blobLength, at + 52);
    out.writeUInt32LE(entry.rawOffset, at + 56);
    out.writeUInt32LE(entry.rawLength, at + 60);
  }
  return out;
}

export function* decodeIndexEntries(plaintext: Buffer): Generator<[string, IndexEntry]> {
  for (let at = 0; at + ENTRY_BYTES <= plaintext.length; at += ENTRY_BYTES) {
    yield [
      plaintext.subarray(at, at + 32).toString('base64'),
      {
        pack: plaintext.subarray(at + 32, at + 48).toString('hex'),
        blobOffset: plaintext.readUInt32LE(at + 48),
        blobLength: plaintext.readUInt32LE(at + 52),
        rawOffset: plaintext.readUInt32LE(at + 56),
        rawLength: plaintext.readUInt32LE(at + 60),
      },
    ];
  }
}
