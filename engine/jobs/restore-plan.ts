// What a restore will write onto a given target: the target's size (a device's, or an image's chosen or current
// size) and the fit plan for the point's layout onto it. Shared by the restore job, its preview and
// `restore --plan`, so the plan shown is the plan written.
import { readFile, realpath, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { type FitOptions, type FitPlan, planFit } from '../partition/fit-layout.ts';
import type { Repository } from '../repository/repository.ts';
import { pointLayout, sourceLayoutOf } from '../restore-fit/point-layout.ts';
import { withRepository } from './repository-access.ts';

export interface RestoreFitOptions extends FitOptions {
  /** An image target's size in bytes (default: its current size, or the point's when it is smaller or new). */
  targetSize?: number | undefined;
  /** New disk and partition GUIDs and file-system UUIDs, with the references to them fixed. */
  newIdentity?: boolean | undefined;
}

/** The size a restore to `path` writes: a device's own size; an image's requested size, else the larger of its
 * current size and the point's (as restores always did). */
export async function restoreTargetSize(
  path: string | null,
  pointSize: number,
  requested?: number,
): Promise<number> {
  const info = path ? await stat(path).catch(() => null) : null;
  if (path && info?.isBlockDevice()) {
    const name = basename(await realpath(path));
    return Number((await readFile(`/sys/class/block/${name}/size`, 'utf8')).trim()) * 512;
  }
  if (requested !== undefined) return requested;
  return Math.max(info?.size ?? 0, pointSize);
}

export async function planRestore(
  repo: Repository,
  pointId: string,
  targetSize: number,
  options: FitOptions = {},
): Promise<FitPlan> {
  const point = await repo.openPoint(pointId);
  return planFit(sourceLayoutOf(await pointLayout(point)), targetSize, options);
}

/** The plan for restoring point `pointId` of the repository at `repoPath` onto `target` (opens the repository);
 * a target that does not exist yet (null) is a new image. */
export async function planForTarget(
  repoPath: string,
  pointId: string,
  target: string | null,
  options: RestoreFitOptions,
): Promise<FitPlan> {
  return withRepository(repoPath, async (repo) => {
    const manifest = await repo.loadManifest(pointId);
    const size = await restoreTargetSize(target, manifest.source.size, options.targetSize);
    return planRestore(repo, pointId, size, options);
  });
}
