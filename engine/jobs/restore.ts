// The restore job: writes a restore point to an image file (emptied first, so unused and zero units cost
// nothing) or a block device. The target was confirmed by the caller (restore.preview's token); the device
// layer still refuses a mounted, swap, held or too-small device. If interrupted, the target holds a mix of old
// and restored data: restoring again is safe (restores are idempotent).
import { realpath, stat, truncate } from 'node:fs/promises';
import { RefusalError } from '../../protocol/failure.ts';
import { checkRestoredSystem } from '../boot-check/check.ts';
import { loopDevicesBacking } from '../device/busy.ts';
import { openWriter } from '../device/open.ts';
import { heldNameOf } from '../handles/held-path.ts';
import { runningBackups, whileReading } from '../repository/locks.ts';
import { checkChunksPresent, restorePoint } from '../repository/restore.ts';
import { restoreFitted } from '../restore-fit/fitted-restore.ts';
import { giveNewIdentity } from '../restore-fit/new-identity.ts';
import type { JobContext } from './manager.ts';
import { withRepository } from './repository-access.ts';
import { planRestore, type RestoreFitOptions, restoreTargetSize } from './restore-plan.ts';

export interface RestoreParams extends RestoreFitOptions {
  repo: string;
  point: string;
  to: string;
  /** An instant restore's journal, when `to` is a held target (/proc/PID/fd/N) with no directory of its own. */
  journalPath?: string | undefined;
}

export async function runRestore(
  params: RestoreParams,
  context: JobContext,
): Promise<Record<string, unknown>> {
  return withRepository(params.repo, async (repo) => {
    const pointId = await repo.resolvePointId(params.point);
    // Registered as read: a prune meanwhile keeps the point and all it needs.
    return whileReading(repo.backend, pointId, async () => {
      const manifest = await repo.loadManifest(pointId);
      if (!manifest.complete) {
        throw new Error(
          `Restore point ${manifest.id} is incomplete (its backup was interrupted); run the backup again to finish it.`,
        );
      }
      // Missing or truncated packs are found before the target is emptied.
      await checkChunksPresent(repo, manifest);
      const needed = manifest.source.size;
      const existing = await stat(params.to).catch(() => null);
      // `to` may be a held target (/proc/PID/fd/N): it is opened as given, and its real name only looked up.
      const target = params.to;
      // What messages and the result call it: the name the caller gave, not the descriptor's path.
      const targetName = heldNameOf(target) ?? target;
      const isDevice = existing?.isBlockDevice() ?? false;
      // A backup running into this repository from another process (another command's engine) reads the target;
      // backups record their source by its real name.
      const realTarget = existing ? await realpath(target) : target;
      const backedUp = (await runningBackups(repo.backend)).find((backup) => backup.source === realTarget);
      if (backedUp) {
        throw new RefusalError(
          `refusing to restore to ${realTarget}: it is being backed up right now (point ${backedUp.pointId})`,
        );
      }
      // A target of another size (or --grow) gets a fitted layout; refusals come before any write.
      const targetSize = await restoreTargetSize(target, needed, params.targetSize);
      const plan = await planRestore(repo, manifest.id, targetSize, params);
      if (plan.mode !== 'as-is') {
        if (!isDevice) {
          const loops = existing ? await loopDevicesBacking(target) : [];
          if (loops.length) {
            throw new RefusalError(
              `Refusing to restore to ${target}: the image is attached as ${loops.join(', ')}; detach it first.`,
            );
          }
        }
        const fitted = await restoreFitted(repo, manifest, target, plan, {
          isDevice,
          signal: context.signal,
          onProgress: (progress) => context.progress(progress),
        });
        const identity = params.newIdentity ? await giveNewIdentity(target) : null;
        const bootCheck = await checkRestoredSystem(target, targetName);
        return {
          point: manifest.id,
          target: targetName,
          plan,
          ...fitted,
          ...(identity ? { identity } : {}),
          ...(bootCheck ? { bootCheck } : {}),
        };
      }
      if (!isDevice) {
        const loops = existing ? await loopDevicesBacking(target) : [];
        if (loops.length) {
          throw new RefusalError(
            `Refusing to restore to ${target}: the image is attached as ${loops.join(', ')}; detach it first.`,
          );
        }
        // Empty the image, so units the point does not use read as zeros, then give it the point's size.
        if (existing) await truncate(target, 0);
        if (existing) await truncate(target, Math.max(existing.size, needed));
      }
      const writer = await openWriter(target, { minSize: needed });
      let result: Awaited<ReturnType<typeof restorePoint>>;
      try {
        context.signal.throwIfAborted();
        result = await restorePoint(repo, manifest, writer, {
          targetIsZeroed: !isDevice,
          chunksChecked: true,
          onProgress: (progress) => {
            context.progress(progress);
            // restorePoint has no cancel hook: stop it from its progress callback.
            context.signal.throwIfAborted();
          },
        });
        await writer.flush();
      } finally {
        await writer.close();
      }
      const identity = params.newIdentity ? await giveNewIdentity(target) : null;
      // What a boot needs is checked before anyone reboots into the restored system.
      const bootCheck = await checkRestoredSystem(target, targetName);
      return {
        point: manifest.id,
        target: targetName,
        ...result,
        ...(identity ? { identity } : {}),
        ...(bootCheck ? { bootCheck } : {}),
      };
    });
  });
}
