// The intermediate container: where a write's victim (the old bytes of a unit not yet copied) waits until the
// copier takes it. Memory, a preallocated file, or a spare partition; the snapshot session does the
// accounting (it reserves space before a put), the container stores and frees.

export type ContainerKind = 'memory' | 'file' | 'device';

export interface IntermediateContainer {
  readonly kind: ContainerKind;
  /** Human-readable, for messages: "memory", "file /var/tmp/x.dlc", "device /dev/sdb2". */
  readonly description: string;
  /** Bytes it may hold at most. */
  readonly capacity: number;
  /** Bytes it holds now (a unit held costs its slot: the unit size). */
  readonly usedBytes: number;
  /** Largest unit one put accepts; every unit costs this much. */
  readonly slotSize: number;
  /**
   * Stores the old bytes of `unit`; the caller may reuse `data` once this resolves. Rejects when full (the
   * session reserves first, so that is a bug) or on I/O error.
   */
  put(unit: number, data: Buffer): Promise<void>;
  /** The bytes stored for `unit` (the caller may keep it; the unit stays stored until free). Rejects when not held. */
  take(unit: number): Promise<Buffer>;
  /** Releases the unit's space; no-op when not held. Call only once no take of it is in flight. */
  free(unit: number): void;
  has(unit: number): boolean;
  /** Releases the backing store (a file container deletes its file). */
  close(): Promise<void>;
}

/** A container operation failed: says which container, which unit, and what to do. */
export class ContainerError extends Error {}
