// The instant restore job: the target is usable at once as a loop device served through the tap, while the
// background copier fills it from the restore point. The job reports the loop device in its result as soon as
// it exists, succeeds once every unit is on the target and the loop device is no longer mounted (then it
// detaches). Cancelled or interrupted before the copy completes, the target is only partly restored.
import { truncate } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { startInstantRestore } from '../tap/instant-restore.ts';
import { mountPointsOf } from '../tap/system-state.ts';
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
    const point = await repo.openPoint(pointId);
    const unitSize = point.manifest.unitSize;
    // An existing image is emptied first, so units the point does not use read as zeros.
    await truncate(params.to, 0).catch(() => {});
    const restore = await startInstantRestore(
      point,
      params.to,
      params.journalPath ? { journalPath: params.journalPath } : {},
    );
    context.progress({ detail: { loopDevice: restore.loopDevice } });
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
      // Cancelled, or the engine stops: leave now (a mounted target then loses its tap with this process).
      if (context.signal.aborted) break;
      const mounted = await mountPointsOf(restore.loopDevice).catch(() => [] as string[]);
      if ((complete || copyError) && mounted.length === 0) break;
      await sleep(POLL_MS);
    }
    // Stop serving. Before completion detach says the target is partly restored; while mounted it refuses.
    await restore.detach();
    if (copyError) throw copyError;
    context.signal.throwIfAborted();
    return { point: pointId, target: params.to, loopDevice: restore.loopDevice, instant: true };
  });
}
