// `diskline points --repo R`: lists the restore points, oldest first; interrupted backups show as incomplete.
import { DamageError } from '../../../protocol/failure.ts';
import { formatBytes, openRepository, repositoryHelp, repositoryOptions } from '../repository-access.ts';
import { parseVerbArgs, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'points --repo R [--json]',
  summary: 'List the restore points in a repository',
  help: `${repositoryHelp}\n  --json                 print an array of points`,
  async run(args) {
    const { values } = parseVerbArgs(args, { ...repositoryOptions, json: { type: 'boolean' } });
    const repo = await openRepository(values);
    try {
      const { points, damaged } = await repo.listPoints();
      for (const point of damaged)
        process.stderr.write(`warning: point ${point.id} cannot be read: ${point.error}\n`);
      if (values.json) {
        process.stdout.write(`${JSON.stringify(points)}\n`);
      } else if (points.length === 0) {
        process.stdout.write(`No restore points in ${repo.path}\n`);
      } else {
        const rows = points.map((p) =>
          [
            p.id,
            p.time.replace('T', ' ').slice(0, 19),
            p.complete ? p.consistency : 'INCOMPLETE',
            formatBytes(p.usedBytes),
            formatBytes(p.changedBytes),
            formatBytes(p.storedBytes),
            p.source,
          ].join('  '),
        );
        process.stdout.write(
          `${['id', 'time (UTC)', 'kind', 'used', 'changed', 'stored', 'source'].join('  ')}\n${rows.join('\n')}\n`,
        );
      }
      if (damaged.length > 0) {
        throw new DamageError(
          `${damaged.length} restore point(s) in ${repo.path} are damaged: ${damaged.map((point) => point.id).join(', ')}`,
        );
      }
    } finally {
      await repo.close();
    }
  },
};
