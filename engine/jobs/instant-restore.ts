// The instant restore job: the target is usable at once as a loop device served through the tap, while the
// background copier fills it from the restore point. The job reports the loop device in its result as soon as
// it exists, succeeds once every unit is on the target and the loop device is no longer mounted (then it
// detaches). An interrupted instant restore of the same point to the same target resumes from its journal and
// keeps the target as it is. Cancelled before the copy completes, the target is only partly restored; while
// it is mounted the job keeps serving it (the file system on it would lose its device otherwise).
import { stat, truncate } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { whileReading } from '../repository/locks.ts';
import { instantRestoreResumes, startInstantRestore } from '../tap/instant-restore.ts';
import { mountPointsOfVolume } from '../tap/system-state.ts';
import type { JobContext } from './manager.ts';
import { withRepository } from './repository-access.ts';
import type { RestoreParams } from './restore.ts';

const POLL_MS = 500;

export async function runInstantRestore(
  params: RestoreParams,
  context: JobContext,
): Promise<Record<string, unknown>> {
  return withRepository(params.repo, async (repo) => {
    const pointId = await repo.resolvePointId(params.point);
    // Registered as read: a prune meanwhile keeps the point and all it needs.
    return whileReading(repo.backend, pointId, async () => {
      const point = await repo.openPoint(pointId);
      const unitSize = point.manifest.unitSize;
      const existing = await stat(params.to).catch(() => null);
      const isDevice = existing?.isBlockDevice() ?? false;
      const resuming = instantRestoreResumes(
        point,
        params.to,
        isDevice,
        ...(params.journalPath ? [params.journalPath] : []),
      );
      if (!isDevice && !resuming && existing) {
        // An image starts all zero so unused and all-zero units need no writes; a bigger image keeps its size.
        await truncate(params.to, 0);
        await truncate(params.to, Math.max(existing.size, point.manifest.source.size));
      }
      const restore = await startInstantRestore(point, params.to, {
        targetIsZeroed: !isDevice && !resuming,
        ...(params.journalPath ? { journalPath: params.journalPath } : {}),
      });
      context.progress({ detail: { point: pointId, loopDevice: restore.loopDevice, resumed: resuming } });
      let copyError: Error | null = null;
      let complete = false;
      restore.whenComplete.then(
        () => {
          complete = true;
        },
        (error: Error) => {
          copyError = error;
        },
      );
      for (;;) {
        const progress = restore.progress();
        context.progress({
          doneBytes: progress.restoredUnits * unitSize,
          totalBytes: progress.totalUnits * unitSize,
          detail: { loopDevice: restore.loopDevice, onDemandUnits: progress.onDemandUnits },
        });
        const mounted = await mountPointsOfVolume(restore.loopDevice).catch(() => [] as string[]);
        if (mounted.length === 0 && (complete || copyError || context.signal.aborted)) break;
        await sleep(POLL_MS);
      }
      // Stop serving. Before completion detach says the target is partly restored (its journal lets it resume).
      await restore.detach();
      if (copyError) throw copyError;
      context.signal.throwIfAborted();
      return { point: pointId, target: params.to, loopDevice: restore.loopDevice, instant: true };
    });
  });
}
