// `diskline backup <source> --repo R`: one restore point of a disk or image, taken by the engine's backup job
// (the daemon's when it runs, else one hosted here): an attached volume — named by its source or by its loop
// device — through its session (consistent point); an image or an unused device as it is; a device in use
// without the tap is refused unless --allow-inconsistent. Prints the point and its stats.
import { resolve } from 'node:path';
import { UsageError } from '../../../protocol/failure.ts';
import { CONTAINER_SYNTAX, containerOption } from '../container-option.ts';
import { followJob, openEngineClient, repoForEngine, requireSucceeded } from '../engine-jobs.ts';
import { formatBytes, repositoryHelp, repositoryOptions, requireRepo } from '../repository-access.ts';
import { parseVerbArgs, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage:
    'backup <source> --repo R [--container SPEC] [--allow-inconsistent] [--pre-hook CMD] [--post-hook CMD] [--no-resume] [--strict] [--json]',
  summary: 'Back up a disk or image into a new restore point',
  help:
    `${repositoryHelp}\n  --json                 print {point, stats} when done\n` +
    `  --container SPEC       where old data waits while the disk is written: ${CONTAINER_SYNTAX}\n` +
    '                         (default memory:64M; a device must be a spare partition on another disk)\n' +
    '  --allow-inconsistent   back up a device in use without the tap anyway (a crash-consistent point)\n' +
    '  --pre-hook CMD         attached volumes: a shell command the engine runs before the freeze\n' +
    '  --post-hook CMD        attached volumes: a shell command the engine runs after the thaw\n' +
    '  --no-resume            start afresh even if an interrupted backup of this source exists\n' +
    '  --strict               refuse a source whose used-block map cannot be trusted (damaged file-system metadata)\n' +
    '                         instead of copying it whole with a warning (exit 4)\n' +
    '  The engine daemon takes the backup when it runs (with its own repository passphrase); otherwise an\n' +
    '  engine in this command does. An interrupted backup of the same source is resumed\n' +
    '  when the source is unchanged since (--no-resume starts afresh).',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      ...repositoryOptions,
      json: { type: 'boolean' },
      container: { type: 'string' },
      'allow-inconsistent': { type: 'boolean' },
      'pre-hook': { type: 'string' },
      'post-hook': { type: 'string' },
      'no-resume': { type: 'boolean' },
      strict: { type: 'boolean' },
    });
    const [source, ...extra] = positionals;
    if (!source) throw new UsageError('which disk or image? give the source path');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const repo = repoForEngine(requireRepo(values));
    const container = values.container ? containerOption(values.container) : undefined;
    const client = await openEngineClient(values);
    try {
      const job = await followJob(
        client,
        () =>
          client.call('backup.start', {
            source: resolve(source),
            repo,
            ...(container ? { container } : {}),
            ...(values['pre-hook'] ? { preHook: values['pre-hook'] } : {}),
            ...(values['post-hook'] ? { postHook: values['post-hook'] } : {}),
            allowInconsistent: values['allow-inconsistent'] === true,
            ...(values['no-resume'] ? { noResume: true } : {}),
            ...(values.strict ? { strict: true } : {}),
          }),
        values.json ? null : 'backup',
      );
      requireSucceeded(`backup of ${resolve(source)}`, job);
      const result = job.result ?? {};
      const pointId = String(result.point);
      const stats = {
        usedBytes: Number(result.usedBytes),
        changedBytes: Number(result.changedBytes),
        storedBytes: Number(result.storedBytes),
        zeroUnits: Number(result.zeroUnits),
        newChunks: Number(result.newChunks),
      };
      if (values.json) {
        const points = await client.call('points.list', { repo });
        const point = points.find((p) => p.id === pointId) ?? { id: pointId };
        process.stdout.write(`${JSON.stringify({ point, stats })}\n`);
        return;
      }
      const warnings = Array.isArray(result.warnings) ? (result.warnings as string[]) : [];
      for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
      if (result.resumed) process.stderr.write(`resumed interrupted backup ${String(result.resumed)}\n`);
      process.stdout.write(
        `Restore point ${pointId} of ${String(result.source ?? resolve(source))} (${String(result.consistency)}): ` +
          `used ${formatBytes(stats.usedBytes)}, changed ${formatBytes(stats.changedBytes)}, ` +
          `stored ${formatBytes(stats.storedBytes)} (${stats.newChunks} new chunks)\n`,
      );
    } finally {
      await client.close();
    }
  },
};
