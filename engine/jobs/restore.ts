// The restore job: writes a restore point to an image file (emptied first, so unused and zero units cost
// nothing) or a block device. The target was confirmed by the caller (restore.preview's token); the device
// layer still refuses a mounted, swap, held or too-small device. If interrupted, the target holds a mix of old
// and restored data: restoring again is safe (restores are idempotent).
import { readdir, readFile, realpath, stat, truncate } from 'node:fs/promises';
import { checkRestoredSystem } from '../boot-check/check.ts';
import { openWriter } from '../device/open.ts';
import { checkChunksPresent, restorePoint } from '../repository/restore.ts';
import { restoreFitted } from '../restore-fit/fitted-restore.ts';
import { giveNewIdentity } from '../restore-fit/new-identity.ts';
import type { JobContext } from './manager.ts';
import { withRepository } from './repository-access.ts';
import { planRestore, type RestoreFitOptions, restoreTargetSize } from './restore-plan.ts';

/** Loop devices backed by `file`: an attached image may be mounted, so it is never a restore target. */
export async function loopDevicesBackedBy(file: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir('/sys/class/block').catch(() => [] as string[])) {
    if (!/^loop\d+$/.test(name)) continue;
    const backing = await readFile(`/sys/class/block/${name}/loop/backing_file`, 'utf8').catch(() => '');
    if (backing.trim().replace(/ \(deleted\)$/, '') === file) found.push(`/dev/${name}`);
  }
  return found;
}

export interface RestoreParams extends RestoreFitOptions {
  repo: string;
  point: string;
  to: string;
}

export async function runRestore(
  params: RestoreParams,
  context: JobContext,
): Promise<Record<string, unknown>> {
  return withRepository(params.repo, async (repo) => {
    const manifest = await repo.loadManifest(await repo.resolvePointId(params.point));
    if (!manifest.complete) {
      throw new Error(
        `Restore point ${manifest.id} is incomplete (its backup was interrupted); run the backup again to finish it.`,
      );
    }
    // Missing or truncated packs are found before the target is emptied.
    await checkChunksPresent(repo, manifest);
    const needed = manifest.source.size;
    const existing = await stat(params.to).catch(() => null);
    const target = existing ? await realpath(params.to) : params.to;
    const isDevice = existing?.isBlockDevice() ?? false;
    // A target of another size (or --grow) gets a fitted layout; refusals come before any write.
    const targetSize = await restoreTargetSize(target, needed, params.targetSize);
    const plan = await planRestore(repo, manifest.id, targetSize, params);
    if (plan.mode !== 'as-is') {
      if (!isDevice) {
        const loops = existing ? await loopDevicesBackedBy(target) : [];
        if (loops.length) {
          throw new Error(
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
      const bootCheck = await checkRestoredSystem(target);
      return {
        point: manifest.id,
        target,
        plan,
        ...fitted,
        ...(identity ? { identity } : {}),
        ...(bootCheck ? { bootCheck } : {}),
      };
    }
    if (!isDevice) {
      const loops = existing ? await loopDevicesBackedBy(target) : [];
      if (loops.length) {
        throw new Error(
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
    const bootCheck = await checkRestoredSystem(target);
    return {
      point: manifest.id,
      target,
      ...result,
      ...(identity ? { identity } : {}),
      ...(bootCheck ? { bootCheck } : {}),
    };
  });
}
