// One snapshot of a disk in use: from the consistent point (arm) on, every write is checked against the
// per-unit states; a write aimed at a unit not yet copied waits while the unit's old bytes go to the
// intermediate container, and the copier moves every captured unit — from the device, or from the container
// when it was preserved — into the sink. The sink ends with the device's bytes at the consistent point.
//
// Failure modes: a source read error, a container I/O error, a sink error or cancel() end the session: every
// waiting writer is released (the snapshot no longer needs protecting), the sink is aborted (nothing is
// presented as complete), and run() rejects with the reason. The method, the safe order for a disk in use
// and the proof are in docs/snapshot-core.md.

import { EventEmitter } from 'node:events';
import type { IntermediateContainer } from '../container/types.ts';
import type { BlockReader, ByteRange } from '../device/types.ts';
import { BlockMapWatch, cellLayout, renderBlockMap } from './block-map.ts';
import { ContainerPressure } from './pressure.ts';
import type {
  HintKind,
  ReadableUnitSink,
  SessionResult,
  SessionStats,
  UnitSink,
  WriteInterceptor,
} from './types.ts';
import { coveredBy, DEFAULT_UNIT_SIZE, planUnits } from './unit-plan.ts';
import { COPIED, FREE, PENDING, PRESERVED, type UnitStates } from './unit-states.ts';

export interface SnapshotSessionOptions {
  /** The device beneath the tap (reads see what writers left; writes never go through it). */
  reader: BlockReader;
  /** Bytes to capture. For a disk in use: the whole disk, then restrictTo(list from the snapshot) after arm(). */
  usedRanges: readonly ByteRange[];
  /** Copy unit in bytes, a multiple of 4096; default 64 KiB (see unit-plan.ts for why). */
  unitSize?: number;
  /** Where preserved units wait; the caller closes it after run() settles. */
  container: IntermediateContainer;
  sink: UnitSink;
  /** Bytes neither intercepted nor copied (e.g. a container file's own blocks on the protected volume). */
  excludedRanges?: readonly ByteRange[];
  /** Changed-block tracking: copy only units touching these ranges. */
  onlyRanges?: readonly ByteRange[];
  /** Fractions of the container's capacity; defaults 0.75 and 0.5. */
  highWatermark?: number;
  lowWatermark?: number;
  /** Longest delay a writer gets just below capacity; default 100 ms. */
  maxThrottleDelayMs?: number;
  /** Largest device read of the copier; default 1 MiB. */
  readRequestBytes?: number;
  /**
   * Copier reads in flight; default: the libuv thread pool's size (UV_THREADPOOL_SIZE, 4 unless set) minus 2,
   * at least 2. Node serves file I/O from that pool: two threads stay free for the reads that preserve units
   * for waiting writers and for the sink's own file writes. A process that sets UV_THREADPOOL_SIZE=8 copies
   * with 6 reads in flight (devices with deep queues read faster so).
   */
  readsInFlight?: number;
  /** Units [firstUnit, firstUnit + count) no longer need interception (a tap clears its intercept bits). */
  onSettle?: (firstUnit: number, count: number) => void;
}

/** The session ended because cancel() was called. */
export class SessionCancelled extends Error {}

type Phase = 'ready' | 'armed' | 'running' | 'done' | 'failed';

interface HintRange {
  next: number;
  end: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const RESOLVED = Promise.resolve();
const MAX_HINTS = 4096;
const PROGRESS_INTERVAL_MS = 100;

export class SnapshotSession extends EventEmitter implements WriteInterceptor {
  readonly unitSize: number;
  readonly unitCount: number;
  readonly size: number;
  readonly states: UnitStates;
  /** Units with writers waiting on them (count of writers), for the block map. */
  readonly writingUnits = new Map<number, number>();

  private readonly reader: BlockReader;
  private readonly container: IntermediateContainer;
  private readonly sink: UnitSink;
  private readonly excluded: ByteRange[];
  private readonly mixedUnits: Set<number>;
  private readonly onSettle: ((firstUnit: number, count: number) => void) | undefined;
  private readonly excludedInput: readonly ByteRange[] | undefined;
  private readonly onlyInput: readonly ByteRange[] | undefined;

  /** Container accounting in units (each costs one slot of slotBytes), and its pressure on writers. */
  private readonly slotBytes: number;
  private readonly pressure: ContainerPressure;

  private readonly readRequestUnits: number;
  private readonly readsInFlight: number;
  /** Copier read buffers, reused once the sink has every unit of a run (readers with readInto only). */
  private readonly freeReadBuffers: Buffer[] = [];

  /** Units being read right now (by the copier or to preserve them); writers wait on the promise. */
  private readonly busyUnits = new Map<number, Promise<void>>();
  /** Units read by the copier whose bytes are on their way to the sink. */
  private readonly inTransit = new Map<number, Buffer>();
  /** Preserved units waiting to be drained, oldest first. */
  private preservedQueue: number[] = [];
  private preservedQueueHead = 0;
  private hints: HintRange[] = [];
  private cursor = 0;

  private phase: Phase = 'ready';
  private failure: Error | null = null;
  private readonly ended = deferred();
  private workSignal = deferred();
  private sinkTail: Promise<void> = RESOLVED;
  private sinkAborted = false;
  private readonly watches = new Set<BlockMapWatch>();

  private totalBytes = 0;
  private bytesCopied = 0;
  private copiedUnits = 0;
  private preservedEver = 0;
  private interceptedWrites = 0;
  private throttledWrites = 0;
  private suspendedWrites = 0;
  private startedAt = 0;
  private lastProgressAt = 0;

  constructor(options: SnapshotSessionOptions) {
    super();
    this.reader = options.reader;
    this.container = options.container;
    this.sink = options.sink;
    this.size = options.reader.size;
    this.unitSize = options.unitSize ?? DEFAULT_UNIT_SIZE;
    const plan = planUnits({
      size: this.size,
      unitSize: this.unitSize,
      usedRanges: options.usedRanges,
      excludedRanges: options.excludedRanges,
      onlyRanges: options.onlyRanges,
    });
    this.unitCount = plan.unitCount;
    this.states = plan.states;
    this.excluded = plan.excluded;
    this.mixedUnits = plan.mixedUnits;
    this.onSettle = options.onSettle;
    this.excludedInput = options.excludedRanges;
    this.onlyInput = options.onlyRanges;

    if (this.container.slotSize < this.unitSize) {
      throw new Error(
        `${this.container.description} stores ${this.container.slotSize}-byte slots, smaller than the ` +
          `${this.unitSize}-byte copy unit; create it with slotSize ${this.unitSize}`,
      );
    }
    this.slotBytes = this.container.slotSize;
    const capacityUnits = Math.floor(this.container.capacity / this.slotBytes);
    if (capacityUnits < 1) {
      throw new Error(
        `${this.container.description} cannot hold a single ${this.unitSize}-byte unit; give it more space`,
      );
    }
    this.pressure = new ContainerPressure({
      capacityUnits,
      highWatermark: options.highWatermark ?? 0.75,
      lowWatermark: options.lowWatermark ?? 0.5,
      maxThrottleDelayMs: options.maxThrottleDelayMs ?? 100,
      onChange: (pressure) => this.emit('pressure', pressure),
    });
    this.readRequestUnits = Math.max(1, Math.floor((options.readRequestBytes ?? 1 << 20) / this.unitSize));
    const threadPool = Number(process.env.UV_THREADPOOL_SIZE) || 4;
    this.readsInFlight = Math.max(1, options.readsInFlight ?? Math.max(2, threadPool - 2));

    this.countTotalBytes();
  }

  private countTotalBytes(): void {
    const capturedUnits = this.unitCount - this.states.counts[FREE]!;
    const lastUnit = this.unitCount - 1;
    const lastShortfall = this.states.get(lastUnit) !== FREE ? this.unitSize - this.unitLength(lastUnit) : 0;
    this.totalBytes = capturedUnits * this.unitSize - lastShortfall;
  }

  // ── Consistent point and interception ───────────────────────────────────────────────────────────────

  /**
   * Narrows what the snapshot captures, after arm() and before run(). The safe order for a disk in use:
   * construct with the whole disk as used, arm() at the freeze, list the used blocks from readSnapshot (the
   * consistent point itself, so blocks allocated between listing and freezing cannot be missed), then
   * restrictTo(that list). Units that leave the capture become free (their preserved bytes leave the
   * container); a unit being preserved right now stays captured.
   */
  restrictTo(usedRanges: readonly ByteRange[]): void {
    if (this.phase !== 'ready' && this.phase !== 'armed') {
      throw new Error(`the capture can be narrowed only before run(); the session is ${this.phase}`);
    }
    const plan = planUnits({
      size: this.size,
      unitSize: this.unitSize,
      usedRanges,
      excludedRanges: this.excludedInput,
      onlyRanges: this.onlyInput,
    });
    let settledFrom = -1;
    const ALL_PENDING = 0b01010101;
    for (let unit = 0; unit <= this.unitCount; unit++) {
      let settles = false;
      if ((unit & 3) === 0 && unit + 4 <= this.unitCount) {
        // Whole bytes first: all captured or all free already (nothing changes), or pending → free.
        const planned = plan.states.packed[unit >>> 2]!;
        const now = this.states.packed[unit >>> 2]!;
        const skip = planned === ALL_PENDING || now === 0;
        const freeAll = planned === 0 && now === ALL_PENDING && !this.anyBusy(unit, unit + 4);
        if (skip || freeAll) {
          if (freeAll) {
            this.states.fillByte(unit >>> 2, 0);
            for (let i = 0; i < 4; i++) this.unitChanged(unit + i);
            if (settledFrom < 0) settledFrom = unit;
          } else if (settledFrom >= 0) {
            this.onSettle?.(settledFrom, unit - settledFrom);
            settledFrom = -1;
          }
          unit += 3;
          continue;
        }
      }
      if (unit < this.unitCount && plan.states.get(unit) !== PENDING) {
        const state = this.states.get(unit);
        if (state === PENDING && !this.busyUnits.has(unit)) {
          this.setState(unit, FREE);
          settles = true;
        } else if (state === PRESERVED) {
          this.container.free(unit);
          this.pressure.freed();
          this.setState(unit, FREE);
        }
      }
      if (settles && settledFrom < 0) settledFrom = unit;
      if (!settles && settledFrom >= 0) {
        this.onSettle?.(settledFrom, unit - settledFrom);
        settledFrom = -1;
      }
    }
    this.countTotalBytes();
  }

  /**
   * The consistent point: from now on writes are intercepted. Call with the file system frozen. Once armed,
   * either run() or cancel(): a session that is armed and never runs fills its container and then holds every
   * writer that needs it.
   */
  arm(): void {
    if (this.phase !== 'ready')
      throw new Error(`the snapshot session is ${this.phase}; it can be armed only once`);
    this.phase = 'armed';
  }

  /** Calls back for each run of units a tap must intercept (pending ones), e.g. to set its intercept bits. */
  forEachPendingRun(callback: (firstUnit: number, count: number) => void): void {
    let unit = this.states.findNext(0, PENDING);
    while (unit >= 0) {
      let end = unit + 1;
      while (end < this.unitCount && this.states.get(end) === PENDING) end++;
      callback(unit, end - unit);
      unit = this.states.findNext(end, PENDING);
    }
  }

  beforeWrite(offset: number, length: number): Promise<void> {
    if (this.phase === 'ready' || length <= 0 || offset >= this.size) return RESOLVED;
    const end = Math.min(this.size, offset + length);
    if (offset < 0) offset = 0;
    const first = Math.floor(offset / this.unitSize);
    const last = Math.floor((end - 1) / this.unitSize);
    let mustWait = false;
    for (let unit = first; unit <= last; unit++) {
      if (this.states.get(unit) === PENDING) {
        mustWait = true;
        break;
      }
    }
    if (!mustWait || this.failure || this.phase === 'done') return RESOLVED;
    this.interceptedWrites++;
    return this.waitForUnits(first, last, offset, end).catch((error: Error) => this.fail(error));
  }

  /** True when the write's part of a mixed unit, [start, end) ∩ unit, is all excluded bytes (container blocks). */
  private writeMissesUnitData(unit: number, start: number, end: number): boolean {
    if (this.mixedUnits.size === 0 || !this.mixedUnits.has(unit)) return false;
    const unitStart = unit * this.unitSize;
    return coveredBy(
      this.excluded,
      Math.max(start, unitStart),
      Math.min(end, unitStart + this.unitLength(unit)),
    );
  }

  /** Slow path of beforeWrite: preserve (or wait for) every unit of the write still at its consistent bytes. */
  private async waitForUnits(first: number, last: number, start: number, end: number): Promise<void> {
    this.markWriting(first, last, 1);
    let suspendedOnce = false;
    try {
      while (!this.failure) {
        let waitFor: Promise<void> | undefined;
        const toPreserve: number[] = [];
        for (let unit = first; unit <= last; unit++) {
          if (this.states.get(unit) !== PENDING) continue;
          let busy = this.busyUnits.get(unit);
          if (!busy && this.writeMissesUnitData(unit, start, end)) {
            // A write to the container's own blocks inside a pending unit (the container lives on this
            // volume). Storing it must not need the container, yet the unit must leave `pending` before the
            // write passes (a tap stops intercepting a unit once a write to it was let through): copy the unit
            // now, straight from the device.
            void this.copyRun(unit, 1);
            busy = this.busyUnits.get(unit);
          }
          if (busy) waitFor ??= busy;
          else toPreserve.push(unit);
        }
        if (toPreserve.length === 0) {
          if (!waitFor) return;
          await waitFor;
          continue;
        }
        const granted = await this.pressure.reserve(toPreserve.length, {
          throttled: () => {
            this.throttledWrites++;
            this.hintUnits(first, last + 1, 'writing-now');
          },
          suspended: () => {
            if (!suspendedOnce) this.suspendedWrites++;
            suspendedOnce = true;
            // Let the copier take the writer's own units straight from the device: no container needed.
            this.hintUnits(first, last + 1, 'writing-now');
            this.wakeCopier();
          },
        });
        if (granted === 0) return; // the session ended: writers go free
        // States may have moved while this writer waited (the copier may have taken some units).
        const stillPending: number[] = [];
        for (const unit of toPreserve) {
          if (
            stillPending.length < granted &&
            this.states.get(unit) === PENDING &&
            !this.busyUnits.has(unit)
          ) {
            stillPending.push(unit);
          }
        }
        this.pressure.unreserve(granted - stillPending.length);
        if (stillPending.length > 0) await this.preserve(stillPending);
      }
    } finally {
      this.markWriting(first, last, -1);
    }
  }

  /** Reads units' old bytes and stores them in the container (space already reserved). */
  private async preserve(units: number[]): Promise<void> {
    const done = deferred();
    for (const unit of units) this.busyUnits.set(unit, done.promise);
    try {
      let index = 0;
      while (index < units.length && !this.failure) {
        let runEnd = index + 1;
        while (runEnd < units.length && units[runEnd] === units[runEnd - 1]! + 1) runEnd++;
        const firstUnit = units[index]!;
        const count = runEnd - index;
        const data = await this.readSource(firstUnit, count, 'to preserve it for a write');
        for (let i = 0; i < count && !this.failure; i++) {
          const unit = firstUnit + i;
          const unitData = data.subarray(i * this.unitSize, i * this.unitSize + this.unitLength(unit));
          this.maskExcluded(unit, unitData);
          await this.container.put(unit, unitData);
          this.pressure.stored();
          this.preservedEver++;
          this.setState(unit, PRESERVED);
          this.preservedQueue.push(unit);
          this.busyUnits.delete(unit);
          this.onSettle?.(unit, 1);
        }
        index = runEnd;
      }
    } catch (error) {
      this.fail(error as Error);
    } finally {
      for (const unit of units) {
        if (this.busyUnits.get(unit) === done.promise) {
          this.busyUnits.delete(unit);
          if (this.states.get(unit) === PENDING) this.pressure.unreserve(1);
        }
      }
      done.resolve();
      this.wakeCopier();
    }
  }

  private markWriting(first: number, last: number, delta: number): void {
    for (let unit = first; unit <= last; unit++) {
      const count = (this.writingUnits.get(unit) ?? 0) + delta;
      if (count > 0) this.writingUnits.set(unit, count);
      else this.writingUnits.delete(unit);
      this.unitChanged(unit);
    }
  }

  private anyBusy(first: number, end: number): boolean {
    if (this.busyUnits.size === 0) return false;
    for (let unit = first; unit < end; unit++) if (this.busyUnits.has(unit)) return true;
    return false;
  }

  // ── Copier ─────────────────────────────────────────────────────────────────────────────────────────

  /** Moves ranges forward in the copier's order (e.g. ranges being written now, so they skip the container). */
  hint(range: ByteRange, kind: HintKind): void {
    if (range.length <= 0) return;
    const first = Math.max(0, Math.floor(range.start / this.unitSize));
    const end = Math.min(this.unitCount, Math.ceil((range.start + range.length) / this.unitSize));
    this.hintUnits(first, end, kind);
  }

  private hintUnits(first: number, end: number, kind: HintKind): void {
    if (end <= first) return;
    const hint = { next: first, end };
    if (kind === 'writing-now') this.hints.unshift(hint);
    else this.hints.push(hint);
    if (this.hints.length > MAX_HINTS) this.hints.length = MAX_HINTS; // hints only reorder; the cursor covers all
    this.wakeCopier();
  }

  /** Copies every captured unit into the sink, then finishes it. Rejects (after aborting the sink) on failure. */
  async run(): Promise<SessionResult> {
    if (this.phase === 'ready')
      throw new Error('arm() the snapshot session (the consistent point) before run()');
    if (this.phase !== 'armed') {
      if (this.failure) {
        await this.abortSink(this.failure);
        throw this.failure;
      }
      throw new Error(`the snapshot session is ${this.phase}; run() can be called once`);
    }
    this.phase = 'running';
    this.startedAt = performance.now();
    const workers: Promise<void>[] = [];
    for (let i = 0; i < this.readsInFlight; i++) {
      workers.push(this.copierWorker().catch((error: Error) => this.fail(error)));
    }
    await Promise.all(workers);
    await this.sinkTail.catch(() => undefined);
    if (!this.failure) {
      try {
        await this.sink.finish();
      } catch (error) {
        this.fail(new Error(`the destination could not complete the snapshot: ${(error as Error).message}`));
      }
    }
    if (this.failure) {
      await this.abortSink(this.failure);
      throw this.failure;
    }
    this.phase = 'done';
    this.ended.resolve();
    this.pressure.end(); // nothing is pending: no writer can need the container any more
    this.emitProgress(true);
    return {
      unitSize: this.unitSize,
      unitCount: this.unitCount,
      copiedUnits: this.copiedUnits,
      bytesCopied: this.bytesCopied,
      preservedUnits: this.preservedEver,
      peakContainerBytes: this.pressure.peakUnits * this.slotBytes,
      writes: this.writeCounts(),
      durationMs: performance.now() - this.startedAt,
    };
  }

  /** Ends the session: writers are released, the sink aborted, run() rejects with SessionCancelled. */
  cancel(reason = 'the backup was cancelled'): void {
    if (this.phase === 'done' || this.failure) return;
    this.fail(new SessionCancelled(reason));
  }

  private async copierWorker(): Promise<void> {
    while (!this.failure) {
      if (this.pressure.shouldDrain() && this.hasQueuedPreserved()) {
        await this.drainOne();
        continue;
      }
      const run = this.nextRun();
      if (run) {
        await this.copyRun(run.first, run.count);
        continue;
      }
      if (this.hasQueuedPreserved()) {
        await this.drainOne();
        continue;
      }
      if (this.states.counts[PENDING] === 0 && this.states.counts[PRESERVED] === 0) return;
      await this.workSignal.promise;
    }
  }

  private hasQueuedPreserved(): boolean {
    return this.preservedQueueHead < this.preservedQueue.length;
  }

  /** The next run of pending units nobody is reading: hinted ranges first, then disk order. */
  private nextRun(): { first: number; count: number } | null {
    while (this.hints.length > 0) {
      const hint = this.hints[0]!;
      let unit = hint.next;
      while (unit < hint.end && (this.states.get(unit) !== PENDING || this.busyUnits.has(unit))) unit++;
      if (unit >= hint.end) {
        this.hints.shift();
        continue;
      }
      const count = this.claimRun(unit, hint.end);
      hint.next = unit + count;
      return { first: unit, count };
    }
    while (this.cursor < this.unitCount) {
      const unit = this.states.findNext(this.cursor, PENDING);
      if (unit < 0) {
        this.cursor = this.unitCount;
        break;
      }
      if (this.busyUnits.has(unit)) {
        this.cursor = unit + 1; // a writer is preserving it; it will be drained from the container
        continue;
      }
      const count = this.claimRun(unit, this.unitCount);
      this.cursor = unit + count;
      return { first: unit, count };
    }
    return null;
  }

  /** Counts the run of pending, idle units from `first` (at most one read request); the caller marks them busy. */
  private claimRun(first: number, limit: number): number {
    let end = first + 1;
    const max = Math.min(limit, first + this.readRequestUnits);
    while (end < max && this.states.get(end) === PENDING && !this.busyUnits.has(end)) end++;
    return end - first;
  }

  private async copyRun(first: number, count: number): Promise<void> {
    const done = deferred();
    for (let unit = first; unit < first + count; unit++) this.busyUnits.set(unit, done.promise);
    let data: Buffer;
    const pooled = this.reader.readInto ? this.takeReadBuffer() : null;
    try {
      data = await this.readSource(first, count, 'to copy it', pooled);
    } catch (error) {
      if (pooled) this.releaseReadBuffer(pooled);
      this.fail(error as Error);
      done.resolve();
      return;
    } finally {
      for (let unit = first; unit < first + count; unit++) this.busyUnits.delete(unit);
    }
    // Captured: writers may go ahead; the bytes stay readable (inTransit) until the sink has them.
    const pieces: Buffer[] = [];
    for (let i = 0; i < count; i++) {
      const unit = first + i;
      const piece = data.subarray(i * this.unitSize, i * this.unitSize + this.unitLength(unit));
      this.maskExcluded(unit, piece);
      pieces.push(piece);
      this.inTransit.set(unit, piece);
      this.setState(unit, COPIED);
    }
    this.onSettle?.(first, count);
    done.resolve();
    try {
      for (let i = 0; i < count && !this.failure; i++) await this.writeToSink(first + i, pieces[i]!);
    } catch (error) {
      this.fail(error as Error);
    } finally {
      for (let unit = first; unit < first + count; unit++) this.inTransit.delete(unit);
      if (pooled) this.releaseReadBuffer(pooled);
    }
    this.wakeCopier(); // idle workers re-check whether everything is done
    this.emitProgress(false);
  }

  private takeReadBuffer(): Buffer {
    const size = this.readRequestUnits * this.unitSize;
    return (
      this.freeReadBuffers.pop() ?? this.reader.allocateReadBuffer?.(size) ?? Buffer.allocUnsafeSlow(size)
    );
  }

  private releaseReadBuffer(buffer: Buffer): void {
    if (this.freeReadBuffers.length < this.readsInFlight + 2) this.freeReadBuffers.push(buffer);
  }

  private async drainOne(): Promise<void> {
    const unit = this.preservedQueue[this.preservedQueueHead++]!;
    if (this.preservedQueueHead > 1024 && this.preservedQueueHead * 2 > this.preservedQueue.length) {
      this.preservedQueue = this.preservedQueue.slice(this.preservedQueueHead);
      this.preservedQueueHead = 0;
    }
    if (this.states.get(unit) !== PRESERVED) return; // left the capture (restrictTo)
    try {
      const data = await this.container.take(unit);
      await this.writeToSink(unit, data);
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    if (this.failure) return;
    this.container.free(unit);
    this.pressure.freed();
    this.setState(unit, COPIED);
    this.wakeCopier();
    this.emitProgress(false);
  }

  /** One sink write at a time, in the order asked. */
  private async writeToSink(unit: number, data: Buffer): Promise<void> {
    const previous = this.sinkTail;
    const turn = deferred();
    this.sinkTail = turn.promise;
    try {
      await previous;
      if (this.failure) return;
      try {
        await this.sink.writeUnit(unit * this.unitSize, data);
      } catch (error) {
        throw new Error(
          `could not store the unit at byte ${unit * this.unitSize} of ${this.reader.path} in the destination: ` +
            `${(error as Error).message}; the backup was stopped`,
        );
      }
      this.bytesCopied += data.length;
      this.copiedUnits++;
    } finally {
      turn.resolve();
    }
  }

  private wakeCopier(): void {
    const signal = this.workSignal;
    this.workSignal = deferred();
    signal.resolve();
  }

  // ── Failure ────────────────────────────────────────────────────────────────────────────────────────

  private fail(error: Error): void {
    if (this.failure || this.phase === 'done') return;
    const copying = this.phase === 'running';
    this.failure = error;
    this.phase = 'failed';
    this.ended.resolve();
    this.pressure.end();
    this.wakeCopier();
    this.emit('failed', error);
    // While copying, run() aborts the sink once in-flight sink writes have settled; otherwise do it now.
    if (!copying) void this.abortSink(error);
  }

  private async abortSink(reason: Error): Promise<void> {
    if (this.sinkAborted) return;
    this.sinkAborted = true;
    try {
      await this.sink.abort(reason);
    } catch {
      // The session already failed for `reason`; a failing abort adds nothing the user can act on.
    }
  }

  // ── Reading the snapshot ───────────────────────────────────────────────────────────────────────────

  /**
   * The bytes at the consistent point: the device for pending units (and for all before arm()), the container
   * for preserved units, the sink (if it can read back) for copied ones. Free units and excluded bytes read as
   * zeros after arm(): they are not part of the snapshot.
   */
  async readSnapshot(offset: number, length: number): Promise<Buffer> {
    if (this.failure) throw this.failure;
    const end = Math.min(this.size, offset + length);
    if (offset < 0 || end <= offset) return Buffer.alloc(0);
    const out = Buffer.alloc(end - offset);
    const first = Math.floor(offset / this.unitSize);
    const last = Math.floor((end - 1) / this.unitSize);
    let deviceNeeded = this.phase === 'ready';
    for (let unit = first; unit <= last && !deviceNeeded; unit++)
      deviceNeeded = this.states.get(unit) === PENDING;
    const device = deviceNeeded ? await this.readRange(offset, end - offset) : out;
    for (let unit = first; unit <= last; unit++) {
      const unitStart = unit * this.unitSize;
      const from = Math.max(offset, unitStart);
      const to = Math.min(end, unitStart + this.unitSize);
      if (this.deviceHoldsSnapshot(unit)) {
        device.copy(out, from - offset, from - offset, to - offset);
      } else {
        const data = await this.unitAtConsistentPoint(unit);
        data.copy(out, from - offset, from - unitStart, to - unitStart);
      }
    }
    for (const range of this.excluded) {
      const from = Math.max(offset, range.start);
      const to = Math.min(end, range.start + range.length);
      if (to > from) out.fill(0, from - offset, to - offset);
    }
    return out;
  }

  /**
   * The snapshot as a BlockReader (reads go through readSnapshot), e.g. for listing the used blocks at the
   * consistent point after arm(): `restrictTo(inspectDisk(session.snapshotReader()).usedRanges)`.
   */
  snapshotReader(): BlockReader {
    return {
      path: `${this.reader.path} (snapshot)`,
      size: this.size,
      logicalSectorSize: this.reader.logicalSectorSize,
      read: (offset, length) => this.readSnapshot(offset, length),
      close: async () => {},
    };
  }

  /**
   * Whether the device's bytes of `unit` are those of the consistent point, checked after reading them: before
   * arm() always; after, only while the unit is pending (no write reaches a pending unit). A copied or free
   * unit may have been written since without the session hearing of it (a tap stops asking once a unit is
   * settled), so its device bytes are never trusted.
   */
  private deviceHoldsSnapshot(unit: number): boolean {
    return this.phase === 'ready' || this.states.get(unit) === PENDING;
  }

  private async unitAtConsistentPoint(unit: number): Promise<Buffer> {
    const unitStart = unit * this.unitSize;
    const length = this.unitLength(unit);
    for (;;) {
      if (this.failure) throw this.failure;
      const inTransit = this.inTransit.get(unit);
      if (inTransit) return Buffer.from(inTransit); // its buffer is reused once the sink has it
      const state = this.states.get(unit);
      if (state === PRESERVED && this.container.has(unit)) {
        const data = await this.container.take(unit);
        if (this.states.get(unit) === PRESERVED) return data; // not freed (and its slot reused) meanwhile
        continue;
      }
      if (state === PENDING) {
        const data = await this.readRange(unitStart, length);
        if (this.deviceHoldsSnapshot(unit)) return data;
        continue;
      }
      if (state === FREE) return Buffer.alloc(length);
      if (state === COPIED) {
        const readable = this.sink as Partial<ReadableUnitSink>;
        if (typeof readable.readUnit !== 'function') {
          throw new Error(
            `the snapshot's bytes at ${unitStart} of ${this.reader.path} are already copied and this ` +
              'destination cannot read them back; read them from the restore point instead',
          );
        }
        return readable.readUnit(unitStart, length);
      }
      throw new Error(
        `unit ${unit} of ${this.reader.path} is in no readable state (a bug in the snapshot core)`,
      );
    }
  }

  private async readRange(offset: number, length: number): Promise<Buffer> {
    try {
      return await this.reader.read(offset, length);
    } catch (error) {
      throw new Error(
        `could not read ${length} bytes at byte ${offset} of ${this.reader.path}: ${(error as Error).message}`,
      );
    }
  }

  /** Reads units from the source, into `into` when given (a reused buffer), else into a fresh one. */
  private async readSource(
    firstUnit: number,
    count: number,
    why: string,
    into: Buffer | null = null,
  ): Promise<Buffer> {
    const offset = firstUnit * this.unitSize;
    const length = Math.min(this.size - offset, count * this.unitSize);
    let data: Buffer;
    try {
      if (into && this.reader.readInto) {
        const target = into.subarray(0, length);
        data = target.subarray(0, await this.reader.readInto(target, offset));
      } else {
        data = await this.reader.read(offset, length);
      }
    } catch (error) {
      throw new Error(
        `could not read ${this.reader.path} at byte ${offset} (${length} bytes) ${why}: ${(error as Error).message}; ` +
          'the backup was stopped. Check the device (e.g. the kernel log) and try again',
      );
    }
    if (data.length < length) {
      throw new Error(
        `${this.reader.path} returned ${data.length} of ${length} bytes at byte ${offset}; ` +
          'the device may have shrunk or failed. The backup was stopped',
      );
    }
    return data;
  }

  /** Zeros the bytes of a mixed unit that belong to excluded ranges (the container's own blocks). */
  private maskExcluded(unit: number, data: Buffer): void {
    if (this.mixedUnits.size === 0 || !this.mixedUnits.has(unit)) return;
    const unitStart = unit * this.unitSize;
    const unitEnd = unitStart + data.length;
    for (const range of this.excluded) {
      const from = Math.max(unitStart, range.start);
      const to = Math.min(unitEnd, range.start + range.length);
      if (to > from) data.fill(0, from - unitStart, to - unitStart);
    }
  }

  private unitLength(unit: number): number {
    return Math.min(this.unitSize, this.size - unit * this.unitSize);
  }

  // ── State changes, stats and the block map ─────────────────────────────────────────────────────────

  private setState(unit: number, state: 0 | 1 | 2 | 3): void {
    this.states.set(unit, state);
    this.unitChanged(unit);
  }

  private unitChanged(unit: number): void {
    if (this.watches.size === 0) return;
    for (const watch of this.watches) watch.unitChanged(unit);
  }

  private writeCounts() {
    return {
      intercepted: this.interceptedWrites,
      throttled: this.throttledWrites,
      suspended: this.suspendedWrites,
    };
  }

  stats(): SessionStats {
    const elapsed = this.startedAt ? (performance.now() - this.startedAt) / 1000 : 0;
    const bytesPerSecond = elapsed > 0 ? this.bytesCopied / elapsed : 0;
    const remaining = this.totalBytes - this.bytesCopied;
    const counts = this.states.counts;
    return {
      unitSize: this.unitSize,
      units: {
        free: counts[FREE]!,
        pending: counts[PENDING]!,
        preserved: counts[PRESERVED]!,
        copied: counts[COPIED]!,
      },
      container: {
        usedBytes: this.pressure.fill * this.slotBytes,
        capacityBytes: this.pressure.capacityUnits * this.slotBytes,
        highWatermark: this.pressure.highUnits * this.slotBytes,
        lowWatermark: this.pressure.lowUnits * this.slotBytes,
        pressure: this.pressure.state,
      },
      totalBytes: this.totalBytes,
      bytesCopied: this.bytesCopied,
      bytesPerSecond,
      etaSeconds: remaining <= 0 ? 0 : bytesPerSecond > 0 ? remaining / bytesPerSecond : null,
      writes: this.writeCounts(),
    };
  }

  private emitProgress(force: boolean): void {
    const now = performance.now();
    if (!force && now - this.lastProgressAt < PROGRESS_INTERVAL_MS) return;
    this.lastProgressAt = now;
    if (this.listenerCount('progress') > 0) this.emit('progress', this.stats());
  }

  /** The whole block map folded into about `cells` cells (CellState per cell). */
  blockMap(cells: number): Uint8Array {
    return renderBlockMap(this, cellLayout(this.unitCount, cells));
  }

  /** A block-map subscription: full() once, then changes() at any rate costs only the cells that changed. */
  watchBlockMap(cells: number): BlockMapWatch {
    const watch = new BlockMapWatch(this, cells, (closed) => this.watches.delete(closed));
    this.watches.add(watch);
    return watch;
  }
}
