// The copy job: mirrors restore points from one repository into another (engine/repository/point-copy.ts),
// deduplicating against the target. The target's passphrase is DISKLINE_TO_PASSWORD when it differs from the
// source's.

import { whileReading } from '../repository/locks.ts';
import type { CopyOutcome } from '../repository/point-copy.ts';
import { copyPoint } from '../repository/point-copy.ts';
import { Repository } from '../repository/repository.ts';
import type { JobContext } from './manager.ts';
import { enginePassphrase, withRepository } from './repository-access.ts';

export interface CopyParams {
  from: string;
  to: string;
  /** Point ids, unique prefixes or 'latest', as in the source. */
  points: string[];
}

export async function runCopy(
  params: CopyParams,
  context: Pick<JobContext, 'signal' | 'progress'>,
): Promise<{ copied: CopyOutcome[] }> {
  return withRepository(params.from, async (source) => {
    const target = await Repository.open(params.to, {
      password: process.env.DISKLINE_TO_PASSWORD || enginePassphrase(),
    });
    try {
      const ids: string[] = [];
      for (const reference of params.points) ids.push(await source.resolvePointId(reference));
      const copied: CopyOutcome[] = [];
      for (const [n, id] of ids.entries()) {
        context.signal.throwIfAborted();
        copied.push(
          await whileReading(source.backend, id, () =>
            copyPoint(source, target, id, {
              signal: context.signal,
              onProgress: ({ doneBytes, totalBytes }) =>
                context.progress({ doneBytes, totalBytes, detail: { point: n + 1, of: ids.length } }),
            }),
          ),
        );
      }
      await target.ensureHeld();
      return { copied };
    } finally {
      await target.close();
    }
  });
}
