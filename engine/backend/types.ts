// The storage a repository lives in, as a small set of whole-file operations keyed by slash-separated
// names ("packs/ab/ab12…"). Local directories implement it now; the shape fits S3-style object stores
// (write-once objects, ranged reads, listing by prefix, conditional create).

export interface Backend {
  /** A human-readable location for messages, e.g. the directory path. */
  readonly location: string;
  /** Reads a whole file; rejects with code 'ENOENT' when it does not exist. */
  get(name: string): Promise<Buffer>;
  /**
   * Reads `length` bytes at `offset`; shorter only when the file ends first. With `into` (at least `length`
   * bytes), the bytes land there and the result is a view of it: a caller reading much reuses its buffers.
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
  /** Size in bytes, or null when the file does not exist. */
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
}
