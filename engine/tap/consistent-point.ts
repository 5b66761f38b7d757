// The consistent point of a backup of an attached volume. If file systems on the loop device (or its
// partitions) are mounted: run the pre-hook (applications quiesce), flush each (syncfs), freeze each
// (FIFREEZE), arm the snapshot session and the tap's interception at one instant, thaw (milliseconds later),
// run the post-hook — "file-system consistent". Nothing mounted: arm at once — "crash consistent" (like
// pulling the power cord: a journaling file system recovers, unflushed application data may be lost).
// Hooks get DISKLINE_SOURCE, DISKLINE_DEVICE and DISKLINE_MOUNTPOINTS (newline-separated) in their environment.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { WriteInterceptor } from '../snapshot/types.ts';
import type { AttachedVolume } from './attach.ts';
import type { ChangedSince } from './change-tracking.ts';
import { FreezeDeadlineError } from './helper-channel.ts';
import { mountPointsOfVolume } from './system-state.ts';

const run = promisify(execFile);

export { mountPointsOfVolume };

/** What the tap needs of a snapshot session (engine/snapshot SnapshotSession satisfies it). */
export interface ArmableSession extends WriteInterceptor {
  readonly unitSize: number;
  /** The consistent point: from now on the session intercepts writes. */
  arm(): void;
  /** Runs of units still pending, so the tap asks only about those. */
  forEachPendingRun?(callback: (firstUnit: number, count: number) => void): void;
}

export interface ConsistentPointOptions {
  /** Shell command run before the freeze (e.g. flush a database's tables with a read lock). */
  preHook?: string;
  /** Shell command run after the thaw, also when the pre-hook or the freeze failed (e.g. release that lock). */
  postHook?: string;
  /** Start a new change-tracking generation at the point (default true). */
  resetTracking?: boolean;
  /** Longest a hook may run (default 60 s). */
  hookTimeoutMs?: number;
  /** Longest the file systems may stay frozen before the helper thaws them and the point fails (default 10 s). */
  freezeDeadlineMs?: number;
}

const DEFAULT_FREEZE_DEADLINE_MS = 10_000;

export interface ConsistentPointReport {
  consistency: 'frozen' | 'crash-consistent';
  /** File systems frozen for the point. */
  frozenMountPoints: string[];
  /** Milliseconds between the first freeze and the last thaw (0 when crash-consistent). */
  frozenMs: number;
  /** Changes since the previous point (null without tracking reset). */
  tracking: ChangedSince | null;
  notes: string[];
}

async function runHook(
  which: string,
  command: string,
  env: NodeJS.ProcessEnv,
  timeout: number,
): Promise<void> {
  try {
    await run('/bin/sh', ['-c', command], { env, timeout });
  } catch (error) {
    const detail = ((error as { stderr?: string }).stderr ?? '').trim() || (error as Error).message;
    throw new Error(`the ${which} command failed (${command}): ${detail}`);
  }
}

/**
 * Takes the consistent point for `session` on `volume`: freezes what is mounted, arms, thaws. Throws (with
 * everything thawed and the session not armed) when a hook or a freeze fails.
 */
export async function takeConsistentPoint(
  volume: AttachedVolume,
  session: ArmableSession,
  options: ConsistentPointOptions = {},
): Promise<ConsistentPointReport> {
  const mountPoints = await mountPointsOfVolume(volume.loopDevice);
  const env = {
    ...process.env,
    DISKLINE_SOURCE: volume.source,
    DISKLINE_DEVICE: volume.loopDevice,
    DISKLINE_MOUNTPOINTS: mountPoints.join('\n'),
  };
  const hookTimeout = options.hookTimeoutMs ?? 60_000;
  const notes: string[] = [];
  if (options.preHook) {
    try {
      await runHook('pre-hook', options.preHook, env, hookTimeout);
    } catch (error) {
      // A pre-hook that failed halfway may hold what the post-hook releases (a lock, a paused writer).
      if (options.postHook)
        await runHook('post-hook', options.postHook, env, hookTimeout).catch(() => undefined);
      throw new Error(`could not take a consistent point of ${volume.source}: ${(error as Error).message}`);
    }
  }
  let tracking: ChangedSince | null = null;
  const freezeDeadlineMs = options.freezeDeadlineMs ?? DEFAULT_FREEZE_DEADLINE_MS;
  let frozenAt = 0;
  let thawedAt = 0;
  try {
    // Flush first, outside the freeze, so the freeze itself has little left to write and stays short.
    for (const point of mountPoints) await run('sync', ['-f', point]).catch(() => undefined);
    let frozeAny = false;
    let deadlinePassed = false;
    try {
      frozenAt = performance.now();
      // The helper freezes: if this engine dies now, the helper thaws on its own (connection gone, or deadline).
      for (const point of mountPoints) {
        frozeAny = true;
        await volume.freeze(point, freezeDeadlineMs);
      }
      tracking = await volume.setInterceptor(session, session.unitSize, {
        resetTracking: options.resetTracking ?? true,
      });
      session.arm();
    } finally {
      if (frozeAny) {
        try {
          await volume.thaw();
        } catch (error) {
          if (error instanceof FreezeDeadlineError) deadlinePassed = true;
          else notes.push(`thaw of ${mountPoints.join(', ')} failed: ${(error as Error).message}`);
        }
      }
      thawedAt = performance.now();
    }
    // The helper thawed on its deadline before the point was armed: writes may have slipped in unprotected.
    if (deadlinePassed)
      throw new Error(
        `the file systems stayed frozen longer than ${freezeDeadlineMs} ms and were thawed before the point was complete`,
      );
  } catch (error) {
    await volume.setInterceptor(null, session.unitSize).catch(() => undefined);
    if (options.postHook)
      await runHook('post-hook', options.postHook, env, hookTimeout).catch(() => undefined);
    throw new Error(`could not take a consistent point of ${volume.source}: ${(error as Error).message}`);
  }
  if (options.postHook) await runHook('post-hook', options.postHook, env, hookTimeout);
  // Units that are not pending (free, or outside the backup) need no interception: clear their bits.
  if (session.forEachPendingRun) {
    let next = 0;
    const unitCount = Math.ceil(volume.size / session.unitSize);
    session.forEachPendingRun((firstUnit, count) => {
      if (firstUnit > next) volume.settleUnits(next, firstUnit - next);
      next = firstUnit + count;
    });
    if (next < unitCount) volume.settleUnits(next, unitCount - next);
  }
  const consistency = mountPoints.length ? 'frozen' : 'crash-consistent';
  if (!mountPoints.length)
    notes.push(`nothing on ${volume.loopDevice} is mounted: the point is crash-consistent`);
  return {
    consistency,
    frozenMountPoints: mountPoints,
    frozenMs: mountPoints.length ? thawedAt - frozenAt : 0,
    tracking,
    notes,
  };
}
