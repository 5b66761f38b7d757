// The seams of the snapshot core: how a tap asks to write, and where copied units go.

/** Per copy unit: not in the used list · waiting to be copied · old data held in the container · in the sink. */
export type UnitState = 'free' | 'pending' | 'preserved' | 'copied';

/** Every tap (FUSE helper, test harness) calls this before letting a write reach the device. */
export interface WriteInterceptor {
  /** Resolves when a write of `length` bytes at `offset` may proceed; never rejects for pressure, only waits. */
  beforeWrite(offset: number, length: number): Promise<void>;
}

/** Where the copier puts the snapshot's bytes. */
export interface UnitSink {
  /**
   * Receives one unit of the snapshot: `offset` is a multiple of the unit size and `data` is the unit's bytes at
   * the consistent point (shorter only for the last unit of the device). Units arrive in any order, each once.
   * The buffer may be reused after the promise resolves.
   */
  writeUnit(offset: number, data: Buffer): Promise<void>;
  /** Called once after the last unit; the sink makes everything durable. */
  finish(): Promise<void>;
  /** Called instead of finish when the session fails or is cancelled: nothing may be presented as complete. */
  abort(reason: Error): Promise<void>;
}

/** A sink that can give back what it was given (an image file can; a remote repository may not). */
export interface ReadableUnitSink extends UnitSink {
  readUnit(offset: number, length: number): Promise<Buffer>;
}

/** How a copier hint reorders work: 'writing-now' goes before everything, 'first' after earlier hints. */
export type HintKind = 'writing-now' | 'first';

/** Writers: 'throttled' = delayed in proportion to container fill; 'suspended' = held until it drains. */
export type PressureState = 'normal' | 'throttled' | 'suspended';

export interface SessionStats {
  unitSize: number;
  units: Record<UnitState, number>;
  container: {
    usedBytes: number;
    capacityBytes: number;
    highWatermark: number;
    lowWatermark: number;
    pressure: PressureState;
  };
  /** Bytes of units the snapshot captures, and how many of them are in the sink. */
  totalBytes: number;
  bytesCopied: number;
  bytesPerSecond: number;
  etaSeconds: number | null;
  writes: { intercepted: number; throttled: number; suspended: number };
}

export interface SessionResult {
  unitSize: number;
  unitCount: number;
  /** Units written to the sink, and their bytes. */
  copiedUnits: number;
  bytesCopied: number;
  /** Units whose old data went through the container. */
  preservedUnits: number;
  peakContainerBytes: number;
  writes: { intercepted: number; throttled: number; suspended: number };
  durationMs: number;
}
