// `diskline copy POINT... --from R --to R`: mirrors restore points into another repository (a local one off site
// to S3), storing only the chunks the target lacks, through the engine's copy job.
import { UsageError } from '../../../protocol/failure.ts';
import type { CopyOutcome } from '../../repository/point-copy.ts';
import { followJob, openEngineClient, repoForEngine, requireSucceeded } from '../engine-jobs.ts';
import { formatBytes } from '../repository-access.ts';
import { parseVerbArgs, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'copy POINT... --from R --to R [--json]',
  summary: 'Copy restore points into another repository, deduplicated against it',
  help:
    '  POINT                  point ids, unique prefixes, or latest (in the source)\n' +
    '  --from R               the repository to copy from\n' +
    '  --to R                 the repository to copy into (a directory or s3:https://host/bucket/prefix)\n' +
    '  --json                 print {copied: [{from, to, alreadyThere, storedBytes, usedBytes}]}\n' +
    "passphrases: the engine's ($DISKLINE_PASSWORD) for both, or $DISKLINE_TO_PASSWORD for the target when it differs",
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      from: { type: 'string' },
      to: { type: 'string' },
      json: { type: 'boolean' },
    });
    if (!values.from || !values.to) throw new UsageError('--from and --to are required');
    if (positionals.length === 0) throw new UsageError('name at least one point to copy (or latest)');
    const from = repoForEngine(values.from);
    const to = repoForEngine(values.to);
    const client = await openEngineClient(values);
    let job: Awaited<ReturnType<typeof followJob>>;
    try {
      job = await followJob(
        client,
        () => client.call('copy.start', { from, to, points: positionals }),
        values.json ? null : 'copy',
      );
    } finally {
      await client.close();
    }
    requireSucceeded(`copy from ${from} to ${to}`, job);
    const { copied } = job.result as unknown as { copied: CopyOutcome[] };
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ copied })}\n`);
      return;
    }
    for (const point of copied) {
      process.stdout.write(
        point.alreadyThere
          ? `Point ${point.from} is already in the target as ${point.to}\n`
          : `Copied point ${point.from} as ${point.to}: ${formatBytes(point.usedBytes)} used, ${formatBytes(point.storedBytes)} stored new\n`,
      );
    }
  },
};
