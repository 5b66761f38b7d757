// Time as a dependency: code that waits, polls, schedules or times out takes a Clock, so a test can drive
// time (protocol/testing/manual-clock.ts) instead of racing it. Runtime-neutral: the engine and the shell
// both use it; the real one is systemClock.

/** What a timer is to the clock that made it: only that clock can clear it. */
export type TimerHandle = { readonly __timer: unique symbol };

export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  now(): number;
  /** Calls `callback` once, `ms` from now. */
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  /** Resolves `ms` from now; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Builds `sleep` out of a clock's own timers (both clocks share it). */
export function sleepOn(clock: Pick<Clock, 'setTimeout' | 'clearTimeout'>, ms: number, signal?: AbortSignal) {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clock.clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The real clock: Date.now and the runtime's own timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms) as unknown as TimerHandle,
  clearTimeout: (handle) =>
    globalThis.clearTimeout(handle as unknown as ReturnType<typeof globalThis.setTimeout>),
  sleep: (ms, signal) => sleepOn(systemClock, ms, signal),
};
