// The supervisor the shell's tests give startShell: it connects to an engine the test started already (the
// real daemon or the in-process test engine) over a real socket, and never asks for rights or starts one itself.
import { type Clock, sleepOn, systemClock } from '../../protocol/clock.ts';
import { EngineLink } from '../engine-link.ts';
import { EngineSupervisor, type SupervisorDeps } from '../engine-supervisor.ts';

export interface RunningEngineOptions {
  /** Caps the supervisor's backoff between reconnects, so tests that drop the link do not wait seconds. */
  maxSleepMs?: number;
}

/** A supervisor of the engine listening on `systemSocket`; `userSocketPath` is never used (no engine is started). */
export function supervisorOfRunningEngine(
  systemSocket: string,
  userSocketPath: string,
  onConnection: SupervisorDeps['onConnection'],
  options: RunningEngineOptions = {},
): EngineSupervisor {
  const maxSleepMs = options.maxSleepMs ?? Number.POSITIVE_INFINITY;
  // The real clock with its waits capped: a dropped link is retried soon, and the test waits for the reconnect.
  const hurried: Clock = {
    now: () => systemClock.now(),
    setTimeout: (callback, ms) => systemClock.setTimeout(callback, Math.min(ms, maxSleepMs)),
    clearTimeout: (handle) => systemClock.clearTimeout(handle),
    sleep: (ms, signal) => sleepOn(hurried, ms, signal),
  };
  return new EngineSupervisor({
    systemSocket,
    userSocket: userSocketPath,
    connect: (path, onEvent) => EngineLink.connect(path, onEvent),
    startElevated: async () => ({ kind: 'declined' }),
    startUnprivileged: async () => {
      throw new Error('the test engine runs already');
    },
    clock: hurried,
    onConnection,
  });
}
