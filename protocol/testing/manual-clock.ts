// For tests: a Clock that moves only when the test says so. Code under test sets timers and sleeps on it; the
// test waits until the code is waiting (untilWaiting) and then advances time, so no test races the real clock.
import { type Clock, sleepOn, type TimerHandle } from '../clock.ts';

type Timer = { due: number; order: number; callback: () => void };

export class ManualClock implements Clock {
  #now: number;
  #order = 0;
  #timers = new Map<TimerHandle, Timer>();
  #waiters: { count: number; resolve: () => void }[] = [];

  constructor(start = Date.parse('2026-01-05T10:00:00Z')) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const handle = {} as TimerHandle;
    this.#timers.set(handle, { due: this.#now + Math.max(0, ms), order: this.#order++, callback });
    this.#wake();
    return handle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.#timers.delete(handle);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepOn(this, ms, signal);
  }

  /** Timers set and not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the earliest pending timer is due, or null. */
  get nextDue(): number | null {
    let next: number | null = null;
    for (const timer of this.#timers.values()) if (next === null || timer.due < next) next = timer.due;
    return next;
  }

  /** Resolves once at least `count` timers are pending: the code under test has reached its wait. */
  untilWaiting(count = 1): Promise<void> {
    if (this.#timers.size >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ count, resolve }));
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way, in order, each at its own time;
   * lets promise callbacks run after each, so a timer set by a fired one within the span fires too.
   */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      const next = this.#earliest();
      if (!next || next[1].due > end) break;
      this.#timers.delete(next[0]);
      this.#now = Math.max(this.#now, next[1].due);
      next[1].callback();
    }
    this.#now = end;
    await settle();
  }

  /** Advances to the earliest pending timer and fires it (and any due with it). */
  async fireNext(): Promise<void> {
    const due = this.nextDue;
    if (due === null) throw new Error('ManualClock: no timer is pending');
    await this.advance(due - this.#now);
  }

  #earliest(): [TimerHandle, Timer] | null {
    let best: [TimerHandle, Timer] | null = null;
    for (const entry of this.#timers) {
      if (
        !best ||
        entry[1].due < best[1].due ||
        (entry[1].due === best[1].due && entry[1].order < best[1].order)
      )
        best = entry;
    }
    return best;
  }

  #wake(): void {
    const ready = this.#waiters.filter((w) => this.#timers.size >= w.count);
    this.#waiters = this.#waiters.filter((w) => this.#timers.size < w.count);
    for (const waiter of ready) waiter.resolve();
  }
}

/** Lets every queued promise callback run (a macrotask turn), so code woken by a timer gets to its next wait. */
function settle(): Promise<void> {
  const { setImmediate } = globalThis as { setImmediate?: (callback: () => void) => void };
  return new Promise((resolve) => (setImmediate ? setImmediate(resolve) : globalThis.setTimeout(resolve, 0)));
}
