// Repository upkeep jobs: verify (structure, or every byte) and prune (retention). Verify's findings are
// recorded per point in the engine's state, so the timeline can show which points are known good or damaged.
import { DamageError } from '../../protocol/failure.ts';
import type { Retention } from '../../protocol/model.ts';
import type { StateStore } from '../config/state.ts';
import { pruneRepository } from '../repository/prune.ts';
import { parseReadDataSubset, verifyRepository } from '../repository/verify.ts';
import type { JobContext } from './manager.ts';
import { withRepository } from './repository-access.ts';

export async function runVerify(
  /** `repo` is opened; `name` (default: repo) is how the user named it, for records and messages. */
  params: { repo: string; name?: string; readData: boolean; readDataSubset?: string | undefined },
  context: JobContext,
  state: StateStore,
): Promise<Record<string, unknown>> {
  const report = await withRepository(params.repo, async (repo) => {
    const pointIds = await repo.pointIds();
    const report = await verifyRepository(repo, {
      readData: params.readData || params.readDataSubset !== undefined,
      readDataSubset:
        params.readDataSubset === undefined ? undefined : parseReadDataSubset(params.readDataSubset),
      onProgress: ({ doneChunks, totalChunks }) => {
        context.progress({
          doneBytes: doneChunks * repo.chunkSize,
          totalBytes: totalChunks * repo.chunkSize,
        });
        context.signal.throwIfAborted();
      },
    });
    const damaged = new Set(report.damagedPoints.map((point) => point.id));
    const checks = (state.checks[params.name ?? params.repo] ??= {});
    for (const id of pointIds) {
      checks[id] = { ...checks[id], verify: damaged.has(id) ? 'damaged' : 'ok' };
    }
    await state.saveChecks();
    return report;
  });
  if (!report.ok) {
    const first = report.damagedPoints[0];
    throw new DamageError(
      `${params.name ?? params.repo} is damaged: ${report.damagedPoints.length} point(s) cannot be restored exactly` +
        (first ? ` (${first.id}: ${first.problems[0]})` : '') +
        (report.problems.length ? `; ${report.problems[0]}` : '') +
        '. Back up again to replace them; prune the damaged points.',
      { ...report },
    );
  }
  return { ...report };
}

export async function runPrune(
  params: { repo: string; retention: Retention; dryRun: boolean },
  context: JobContext,
): Promise<Record<string, unknown>> {
  return withRepository(params.repo, async (repo) => {
    const report = await pruneRepository(repo, params.retention, {
      dryRun: params.dryRun,
      onStep: () => context.signal.throwIfAborted(),
    });
    return { ...report };
  });
}
