// `diskline copy POINT... --from R --to R`: mirrors restore points into another repository (a local one off site
// to S3), storing only the chunks the target lacks; runs the engine's copy job in this process.
import { runCopy } from '../../jobs/copy.ts';
import { formatBytes, progressLine } from '../repository-access.ts';
import { ExitCode, parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'copy POINT... --from R --to R [--json]',
  summary: 'Copy restore points into another repository, deduplicated against it',
  help:
    '  POINT                  point ids, unique prefixes, or latest (in the source)\n' +
    '  --from R               the repository to copy from\n' +
    '  --to R                 the repository to copy into (a directory or s3:https://host/bucket/prefix)\n' +
    '  --json                 print {copied: [{from, to, alreadyThere, storedBytes, usedBytes}]}\n' +
    'passphrases: $DISKLINE_PASSWORD for both, or $DISKLINE_TO_PASSWORD for the target when it differs',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      from: { type: 'string' },
      to: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (!values.from || !values.to) throw new UsageError('--from and --to are required');
    if (positionals.length === 0) throw new UsageError('name at least one point to copy (or latest)');
    const abort = new AbortController();
    const stop = () => abort.abort(new Error('interrupted'));
    process.once('SIGINT', stop);
    const progress = values.json ? null : progressLine('copy');
    try {
      const { copied } = await runCopy(
        { from: values.from, to: values.to, points: positionals },
        {
          signal: abort.signal,
          progress: ({ doneBytes, totalBytes }) => progress?.update(doneBytes ?? 0, totalBytes ?? 0),
        },
      );
      if (values.json) process.stdout.write(`${JSON.stringify({ copied })}\n`);
      else {
        for (const point of copied) {
          process.stdout.write(
            point.alreadyThere
              ? `Point ${point.from} is already in the target as ${point.to}\n`
              : `Copied point ${point.from} as ${point.to}: ${formatBytes(point.usedBytes)} used, ${formatBytes(point.storedBytes)} stored new\n`,
          );
        }
      }
      return ExitCode.ok;
    } finally {
      progress?.end();
      process.off('SIGINT', stop);
    }
  },
};
