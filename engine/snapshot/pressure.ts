// The intermediate container's accounting and its pressure on writers, in units (each unit costs one slot).
// Space is reserved before a unit's old bytes are read, so the container never holds more than its capacity.
// Above the high watermark a writer is delayed in proportion to the fill between high and capacity; when
// nothing fits, writers are suspended until the copier drains to the low watermark. Nothing is dropped.

import { setTimeout as sleep } from 'node:timers/promises';
import type { PressureState } from './types.ts';

export interface PressureOptions {
  capacityUnits: number;
  /** Fractions of the capacity. */
  highWatermark: number;
  lowWatermark: number;
  maxThrottleDelayMs: number;
  onChange: (pressure: PressureState) => void;
}

/** What a writer's reservation tells the session, so it can count and hint. */
export interface ReservationEvents {
  throttled(): void;
  suspended(): void;
}

interface Signal {
  promise: Promise<void>;
  resolve: () => void;
}

function signal(): Signal {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

export class ContainerPressure {
  readonly capacityUnits: number;
  readonly highUnits: number;
  readonly lowUnits: number;
  private readonly maxThrottleDelayMs: number;
  private readonly onChange: (pressure: PressureState) => void;
  /** Units stored, and units reserved for reads in progress. */
  private held = 0;
  private reserved = 0;
  private peak = 0;
  private suspended = false;
  private drainingToLow = false;
  private ended = false;
  private readonly endSignal = signal();
  private drained = signal();
  private last: PressureState = 'normal';

  constructor(options: PressureOptions) {
    this.capacityUnits = options.capacityUnits;
    this.highUnits = Math.min(
      this.capacityUnits,
      Math.max(1, Math.floor(this.capacityUnits * options.highWatermark)),
    );
    this.lowUnits = Math.max(
      0,
      Math.min(this.highUnits - 1, Math.floor(this.capacityUnits * options.lowWatermark)),
    );
    this.maxThrottleDelayMs = options.maxThrottleDelayMs;
    this.onChange = options.onChange;
  }

  /** Units held or reserved. */
  get fill(): number {
    return this.held + this.reserved;
  }
  get peakUnits(): number {
    return this.peak;
  }
  get state(): PressureState {
    if (this.suspended) return 'suspended';
    return this.fill > this.highUnits ? 'throttled' : 'normal';
  }

  /**
   * Reserves space for up to `wanted` units (at least 1 granted), after a throttle delay above the high
   * watermark, or after a suspension when nothing fits. Resolves 0 once the session ended.
   */
  async reserve(wanted: number, events: ReservationEvents): Promise<number> {
    let throttled = false;
    while (!this.ended) {
      if (!this.suspended) {
        const freeUnits = this.capacityUnits - this.fill;
        if (freeUnits > 0) {
          const granted = Math.min(wanted, freeUnits);
          const fillAfter = this.fill + granted;
          if (!throttled && fillAfter > this.highUnits && this.maxThrottleDelayMs > 0) {
            throttled = true;
            events.throttled();
            this.changed();
            const share = (fillAfter - this.highUnits) / Math.max(1, this.capacityUnits - this.highUnits);
            await Promise.race([sleep(this.maxThrottleDelayMs * Math.min(1, share)), this.endSignal.promise]);
            continue; // the fill changed while this writer slept
          }
          this.reserved += granted;
          this.peak = Math.max(this.peak, this.fill);
          this.changed();
          return granted;
        }
        this.suspended = true;
        this.drainingToLow = true;
        this.changed();
      }
      events.suspended();
      await this.drained.promise;
    }
    return 0;
  }

  /** A reserved unit is now stored. */
  stored(): void {
    this.reserved--;
    this.held++;
  }

  /** Reserved units that were not needed after all (or whose read failed). */
  unreserve(count: number): void {
    if (count <= 0) return;
    this.reserved -= count;
    this.released();
  }

  /** A stored unit left the container. */
  freed(): void {
    this.held--;
    this.released();
  }

  /** Whether the copier should drain the container before reading more: suspended, or filling past high. */
  shouldDrain(): boolean {
    if (this.fill >= this.highUnits) this.drainingToLow = true;
    return this.suspended || this.drainingToLow;
  }

  /** The session ended: writers waiting here go free. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.suspended = false;
    this.endSignal.resolve();
    this.drained.resolve();
    this.changed();
  }

  private released(): void {
    if (this.fill <= this.lowUnits) {
      this.drainingToLow = false;
      if (this.suspended) {
        this.suspended = false;
        const waiting = this.drained;
        this.drained = signal();
        waiting.resolve();
      }
    }
    this.changed();
  }

  private changed(): void {
    const state = this.state;
    if (state === this.last) return;
    this.last = state;
    this.onChange(state);
  }
}
