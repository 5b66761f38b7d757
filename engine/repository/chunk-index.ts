// The index: where each chunk is stored (its group blob in a pack, and its place among the group's plain bytes).
// In memory it is a compact hash table keyed by chunk id; on disk it is the union of sealed index files of
// 64-byte entries; entries of packs a prune has condemned are kept for reading only.

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

/** Entries per page of the in-memory table: pages are never copied as the index grows. */
const PAGE_ENTRIES = 1 << 18;
/** In memory: id (32) | pack number u32 | blobOffset u32 | blobLength u32 | rawOffset u32 | rawLength u32. */
const SLOT_BYTES = 52;
const MAX_LOAD = 0.7;

/**
 * The index in memory as flat tables, not a Map of objects: 52 bytes per chunk in pages of 256 Ki entries, an
 * open-addressing table of u32 entry numbers and u32 hashes (8 to 16 bytes per chunk), and each pack id once. A Map keyed by base64 strings
 * took ~200 bytes per chunk and stops at 2^24 entries (1 TiB of distinct 64 KiB chunks).
 */
export class ChunkIndex {
  readonly #pages: Buffer[] = [];
  #count = 0;
  #table = new Uint32Array(1024);
  #hashes = new Uint32Array(1024);
  readonly #packIds: string[] = [];
  readonly #packNumbers = new Map<string, number>();
  /**
   * Numbers of packs a prune has condemned: their entries are kept for reading only. A backup that started
   * before the prune may have committed a point using them (prune rescues those packs before it deletes any);
   * such a point must restore meanwhile. New backups never deduplicate against them.
   */
  readonly #condemnedPacks = new Set<number>();

  get size(): number {
    return this.#count;
  }

  /** Whether some entries are of packs a prune has condemned. */
  get hasCondemned(): boolean {
    return this.#condemnedPacks.size > 0;
  }

  /** Bytes the tables take (the benchmark reports it per chunk). */
  get memoryBytes(): number {
    return this.#pages.length * PAGE_ENTRIES * SLOT_BYTES + this.#table.byteLength + this.#hashes.byteLength;
  }

  #slotOf(n: number): { page: Buffer; at: number } {
    return { page: this.#pages[Math.floor(n / PAGE_ENTRIES)]!, at: (n % PAGE_ENTRIES) * SLOT_BYTES };
  }

  /** Whether entry `n` holds the 32 bytes of `id` at `idAt` (compared 4 bytes at a time: no call per id). */
  #holds(n: number, id: Buffer, idAt: number): boolean {
    const page = this.#pages[Math.floor(n / PAGE_ENTRIES)]!;
    const at = (n % PAGE_ENTRIES) * SLOT_BYTES;
    for (let i = 0; i < 32; i += 4) if (page.readInt32LE(at + i) !== id.readInt32LE(idAt + i)) return false;
    return true;
  }

  /** The entry number holding `id` (its 32 bytes at `idAt` of `id`), or -1. */
  #find(id: Buffer, idAt = 0): number {
    const mask = this.#table.length - 1;
    const hash = id.readUInt32LE(idAt);
    for (let probe = hash & mask; ; probe = (probe + 1) & mask) {
      const held = this.#table[probe]!;
      if (held === 0) return -1;
      // The table keeps each entry's hash beside it: most probes end without reading the entry.
      if (this.#hashes[probe] === hash && this.#holds(held - 1, id, idAt)) return held - 1;
    }
  }

  #place(hash: number, n: number): void {
    const mask = this.#table.length - 1;
    let probe = hash & mask;
    while (this.#table[probe] !== 0) probe = (probe + 1) & mask;
    this.#table[probe] = n + 1;
    this.#hashes[probe] = hash;
  }

  #grow(): void {
    const old = this.#table;
    const oldHashes = this.#hashes;
    this.#table = new Uint32Array(old.length * 2);
    this.#hashes = new Uint32Array(old.length * 2);
    for (let slot = 0; slot < old.length; slot++)
      if (old[slot] !== 0) this.#place(oldHashes[slot]!, old[slot]! - 1);
  }

  #packNumber(pack: string): number {
    let number = this.#packNumbers.get(pack);
    if (number === undefined) {
      number = this.#packIds.length;
      this.#packIds.push(pack);
      this.#packNumbers.set(pack, number);
    }
    return number;
  }

  #isCondemned(n: number): boolean {
    if (this.#condemnedPacks.size === 0) return false;
    const { page, at } = this.#slotOf(n);
    return this.#condemnedPacks.has(page.readUInt32LE(at + 32));
  }

  #entryAt(n: number): IndexEntry {
    const { page, at } = this.#slotOf(n);
    return {
      pack: this.#packIds[page.readUInt32LE(at + 32)]!,
      blobOffset: page.readUInt32LE(at + 36),
      blobLength: page.readUInt32LE(at + 40),
      rawOffset: page.readUInt32LE(at + 44),
      rawLength: page.readUInt32LE(at + 48),
    };
  }

  /**
   * Whether a backup may reference the chunk without storing it (live packs only). `id`: 32 bytes, or its
   * base64 (idKey).
   */
  has(id: Buffer | string): boolean {
    const n = this.#find(typeof id === 'string' ? Buffer.from(id, 'base64') : id);
    return n >= 0 && !this.#isCondemned(n);
  }

  /** Where to read the chunk: a live pack, else a condemned one not deleted yet. */
  get(id: Buffer | string): IndexEntry | undefined {
    const n = this.#find(typeof id === 'string' ? Buffer.from(id, 'base64') : id);
    return n < 0 ? undefined : this.#entryAt(n);
  }

  set(id: Buffer | string, entry: IndexEntry): void {
    const bytes = typeof id === 'string' ? Buffer.from(id, 'base64') : id;
    this.#setAt(bytes, 0, this.#packNumber(entry.pack), entry);
  }

  #setAt(
    id: Buffer,
    idAt: number,
    pack: number,
    entry: { blobOffset: number; blobLength: number; rawOffset: number; rawLength: number },
  ): void {
    let n = this.#find(id, idAt);
    // A live entry is never replaced by a condemned one: reads and dedup go to the pack that stays.
    if (n >= 0 && this.#condemnedPacks.has(pack) && !this.#isCondemned(n)) return;
    if (n < 0) {
      if ((this.#count + 1) / this.#table.length > MAX_LOAD) this.#grow();
      n = this.#count++;
      if (Math.floor(n / PAGE_ENTRIES) >= this.#pages.length)
        this.#pages.push(Buffer.allocUnsafe(PAGE_ENTRIES * SLOT_BYTES));
      const { page, at } = this.#slotOf(n);
      id.copy(page, at, idAt, idAt + 32);
      this.#place(id.readUInt32LE(idAt), n);
    }
    const { page, at } = this.#slotOf(n);
    page.writeUInt32LE(pack, at + 32);
    page.writeUInt32LE(entry.blobOffset, at + 36);
    page.writeUInt32LE(entry.blobLength, at + 40);
    page.writeUInt32LE(entry.rawOffset, at + 44);
    page.writeUInt32LE(entry.rawLength, at + 48);
  }

  /** Adds every entry of a decoded index file, those of packs in `condemnedPacks` for reading only; no object per entry. */
  addFile(plaintext: Buffer, condemnedPacks: Set<string>): void {
    for (let at = 0; at + ENTRY_BYTES <= plaintext.length; at += ENTRY_BYTES) {
      const pack = plaintext.toString('hex', at + 32, at + 48);
      const number = this.#packNumber(pack);
      if (condemnedPacks.has(pack)) this.#condemnedPacks.add(number);
      this.#setAt(plaintext, at, number, {
        blobOffset: plaintext.readUInt32LE(at + 48),
        blobLength: plaintext.readUInt32LE(at + 52),
        rawOffset: plaintext.readUInt32LE(at + 56),
        rawLength: plaintext.readUInt32LE(at + 60),
      });
    }
  }

  /** Every chunk id of live packs (views into the table: copy one to keep it): what a backup deduplicates against. */
  *ids(): Generator<Buffer> {
    for (let n = 0; n < this.#count; n++) {
      if (this.#isCondemned(n)) continue;
      const { page, at } = this.#slotOf(n);
      yield page.subarray(at, at + 32);
    }
  }

  /** Every entry of live packs with its id's key (idKey): for tests and tools, it makes a string per chunk. */
  *entries(): Generator<[string, IndexEntry]> {
    for (let n = 0; n < this.#count; n++) {
      if (this.#isCondemned(n)) continue;
      const { page, at } = this.#slotOf(n);
      yield [page.toString('base64', at, at + 32), this.#entryAt(n)];
    }
  }

  /** Packs holding live entries (condemned ones are a prune's already). */
  packs(): Set<string> {
    const packs = new Set<string>();
    for (let n = 0; n < this.#count; n++) {
      const { page, at } = this.#slotOf(n);
      const pack = page.readUInt32LE(at + 32);
      if (!this.#condemnedPacks.has(pack)) packs.add(this.#packIds[pack]!);
    }
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
