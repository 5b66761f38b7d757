// `diskline prune --repo R --keep-…`: forgets the restore points the policy does not keep and frees the packs
// no point uses, through the engine's prune job. Backups may run meanwhile (see docs/repository-format.md,
// "Prune").
import { UsageError } from '../../../protocol/failure.ts';
import type { PruneReport } from '../../repository/prune.ts';
import { followJob, openEngineClient, repoForEngine, requireSucceeded } from '../engine-jobs.ts';
import { formatBytes, repositoryHelp, repositoryOptions, requireRepo } from '../repository-access.ts';
import { parseRetention, retentionOptions } from '../retention-options.ts';
import { parseVerbArgs, type Verb } from '../verb.ts';

/** What Object Lock kept from this prune, in words. */
function retentionNotes(report: PruneReport): string {
  let text = '';
  for (const { id, until } of report.retained)
    text += `Cannot forget point ${id} yet: the store retains it until ${until} (Object Lock)\n`;
  if (report.retainedPacks > 0 && report.retainedPacksUntil !== null)
    text += `${report.retainedPacks} pack(s) (${formatBytes(report.retainedBytes)}) left the repository, but the store keeps their bytes until ${new Date(report.retainedPacksUntil).toISOString()} (Object Lock); a lifecycle rule for noncurrent versions frees them after\n`;
  return text;
}

export const verb: Verb = {
  usage: 'prune --repo R --keep-last N [--keep-hourly N …] [--dry-run] [--json]',
  summary: 'Forget restore points a retention policy does not keep and free their space',
  help:
    `${repositoryHelp}\n  --keep-last N, --keep-hourly N, --keep-daily N, --keep-weekly N, --keep-monthly N, --keep-yearly N\n` +
    '  --dry-run              say what would be forgotten, change nothing\n  --json                 print the report',
  async run(args) {
    const { values } = parseVerbArgs(args, {
      ...repositoryOptions,
      ...retentionOptions,
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const policy = parseRetention(values);
    if (Object.keys(policy).length === 0) throw new UsageError('give at least one --keep-… option');
    const repo = repoForEngine(requireRepo(values));
    const client = await openEngineClient(values);
    try {
      const job = await followJob(
        client,
        () => client.call('prune.start', { repo, retention: policy, dryRun: values['dry-run'] === true }),
        null,
      );
      requireSucceeded(`prune of ${repo}`, job);
      const report = job.result as unknown as PruneReport;
      if (values.json) {
        process.stdout.write(`${JSON.stringify(report)}\n`);
        return;
      }
      const verbText = report.dryRun ? 'would forget' : 'forgot';
      process.stdout.write(
        `${report.dryRun ? 'Dry run: ' : ''}kept ${report.kept.length} point(s), ${verbText} ${report.forgotten.length}` +
          `${report.forgotten.length ? ` (${report.forgotten.join(', ')})` : ''}; ` +
          `${report.dryRun ? `${report.condemnedPacks} pack(s) would be freed` : `deleted ${report.deletedPacks} pack(s), freed ${formatBytes(report.freedBytes)}`}` +
          `${report.waitingRecords ? `; ${report.waitingRecords} batch(es) wait for running backups (the next prune deletes them)` : ''}\n`,
      );
      process.stdout.write(retentionNotes(report));
    } finally {
      await client.close();
    }
  },
};
