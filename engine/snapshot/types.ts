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
