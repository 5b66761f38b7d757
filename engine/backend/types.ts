// The storage a repository lives in, as a small set of whole-file operations keyed by slash-separated
// names ("packs/ab/ab12…"). Local directories implement it now; the shape fits S3-style object stores
// (write-once objects, ranged reads, listing by prefix, conditional create).

export interface Backend {
  /** A human-readable location for messages, e.g. the directory path. */
  readonly location: string;
  /** Whole-file writes at once that keep this storage busy, when more than a local disk's two. */
  readonly writesInFlight?: number;
  /**
   * Reads a whole file of at most `maxBytes` (the most its kind may hold); rejects with code 'ENOENT' when it
   * does not exist, and with an UnsafeFileError, unread, when it is not a regular file (a link, FIFO, device)
   * or is larger than `maxBytes`.
   */
  get(name: string, maxBytes: number): Promise<Buffer>;
  /**
   * Reads `length` bytes at `offset`; shorter only when the file ends first. With `into` (at least `length`
   * bytes), the bytes land there and the result is a view of it: a caller reading much reuses its buffers.
   * Rejects with an UnsafeFileError when the file is not a regular file.
   */
  getRange(name: string, offset: number, length: number, into?: Buffer): Promise<Buffer>;
  /**
   * Stores a whole file atomically and durably: after it resolves the file exists whole under `name`, and a
   * crash at any instant before leaves either the old content or none — never part. Overwrites. `data` may
   * come in parts (a pack's blobs), written in order without being joined first.
   */
  put(name: string, data: Buffer | readonly Buffer[]): Promise<void>;
  /** Like put, but fails with code 'EEXIST' when the name exists (the basis of locks). */
  create(name: string, data: Buffer): Promise<void>;
  /** Removes a file; removing a missing file succeeds (idempotent). */
  delete(name: string): Promise<void>;
  /** Every file name under `prefix` (a folder like "index/"), each exactly once, in no particular order. */
  list(prefix: string): Promise<string[]>;
  /** Size in bytes, or null when the file does not exist; an UnsafeFileError when it is not a regular file. */
  size(name: string): Promise<number | null>;
  /** When the file was last written (ms since the epoch), or null when it does not exist. */
  modifiedAt(name: string): Promise<number | null>;
  /**
   * Fails (RepositoryGoneError) when the storage opened is no longer what `location` names: removed, moved or
   * replaced. Every operation already fails that way once the storage is gone; writers call this before a
   * commit, because writes into a moved or replaced repository still succeed where it now is.
   */
  ensureHeld(): Promise<void>;
  close(): Promise<void>;
  /**
   * Until when (ms since the epoch) the store refuses to destroy the file's bytes (S3 Object Lock retention),
   * or null when nothing holds it. Absent on storage without such a rule.
   */
  retainedUntil?(name: string): Promise<number | null>;
}

/**
 * A repository file refused unread: not a regular file (a symbolic link, FIFO, device, directory) or larger than
 * its kind may be. A hostile or damaged repository must not make its reader follow a link, block on a FIFO or
 * read without end.
 */
export class UnsafeFileError extends Error {
  readonly code = 'EUNSAFEFILE';
  /** The file's name in the repository ("points/ab12…"). */
  readonly file: string;
  constructor(file: string, reason: string) {
    super(`${file} ${reason}; refused unread`);
    this.file = file;
  }
}

/** A file as a listing names it, with what tells one written version of it from another. */
export interface ListedFile {
  name: string;
  size: number;
  /** Differs between any two writes of the file (an object store's ETag). */
  version: string;
}

/** A backend that lists versions in the same requests as names: what a local cache of its files needs. */
export interface VersionedListing {
  listVersions(prefix: string): Promise<ListedFile[]>;
}
