// The snapshot-provider seam: how a disk in use is held still at a consistent point while the snapshot core
// (unit states, copier, hints, block map, events — session.ts) copies it. One provider per disk:
// - tap: the disk is served through Diskline's FUSE file and a loop device; every write passes the session's
//   interceptor, which puts a unit's old bytes in the intermediate container before the write goes on
//   (engine/tap/provider.ts).
// - device-mapper: a dm snapshot is inserted under the disk's own mapped device by a table swap; the kernel
//   copies old chunks into the snapshot's store, the session reads the snapshot device and sees no write
//   (engine/device-mapper/provider.ts). Copy-order hints and the block map's "writing" cells need writes the
//   provider can see, so they are the tap's alone.
import type { BlockReader } from '../device/types.ts';
import type { PressureState, WriteInterceptor } from './types.ts';

export type ProviderKind = 'tap' | 'device-mapper';

/** What a provider needs of the snapshot session at the point (SnapshotSession satisfies it). */
export interface PointSession extends WriteInterceptor {
  readonly unitSize: number;
  /** The consistent point: from now on the session's bytes are the disk's at this instant. */
  arm(): void;
  /** Runs of units still pending, so a tap asks only about those. */
  forEachPendingRun?(callback: (firstUnit: number, count: number) => void): void;
}

export interface PointTaken {
  consistency: 'frozen' | 'crash-consistent';
  /** File systems frozen for the point. */
  frozenMountPoints: string[];
  /** Milliseconds between freeze and thaw (0 when nothing was frozen). */
  frozenMs: number;
  notes: string[];
}

/** The fill of a store the provider keeps itself (device-mapper's copy-on-write store). */
export interface ProviderStore {
  usedBytes: number;
  capacityBytes: number;
  pressure: PressureState;
}

/** What the copy's progress tells a provider's upkeep. */
export interface CopyProgress {
  remainingBytes(): number;
  bytesPerSecond(): number;
}

export interface SnapshotProvider {
  readonly kind: ProviderKind;
  /** The disk as its owner names it. */
  readonly source: string;
  /**
   * What the copier reads. Until the point: the live disk. From the point on, the disk as it was then — the tap
   * by holding writes in the session, device-mapper by reading its snapshot device.
   */
  readonly reader: BlockReader;
  /** Writes pass the session's interceptor (container, hints, "writing" cells); false for device-mapper. */
  readonly interceptsWrites: boolean;
  /** Takes the point and arms `session` at it. Throws with nothing left changed when it cannot. */
  takePoint(session: PointSession): Promise<PointTaken>;
  /** Units [firstUnit, firstUnit + count) need no more interception (the tap clears its bits). */
  settleUnits?(firstUnit: number, count: number): void;
  /**
   * Runs while the session copies, until `signal` aborts: the provider's own upkeep (device-mapper: the
   * store's fill and the writers' limit). Rejects when the snapshot can no longer be trusted.
   */
  watch?(progress: CopyProgress, signal: AbortSignal): Promise<void>;
  /** The provider's own store while the copy runs, or null when the session's container is the store. */
  store(): ProviderStore | null;
  /** Drops the snapshot (after the copy, a failure or a cancel) and gives the disk back as it was. */
  release(): Promise<void>;
}
