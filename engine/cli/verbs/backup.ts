// `diskline backup <source> --repo R`: one restore point of a disk or image. Reads the used units through a
// snapshot session (with no writers to intercept for an image or an unmounted device), deduplicates against
// the repository, resumes an interrupted backup of the same source, and prints the point and its stats.
import { MemoryContainer } from '../../container/memory.ts';
import { openReader } from '../../device/open.ts';
import { describeSource, findRelatives } from '../../repository/point-source.ts';
import { PointWriter } from '../../repository/point-writer.ts';
import { SnapshotSession } from '../../snapshot/session.ts';
import {
  formatBytes,
  openRepository,
  progressLine,
  repositoryHelp,
  repositoryOptions,
} from '../repository-access.ts';
import { ExitCode, ExitError, parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'backup <source> --repo R [--json] [--no-resume]',
  summary: 'Back up a disk or image into a new restore point',
  help:
    `${repositoryHelp}\n  --json                 print {point, stats} when done\n` +
    '  --no-resume            start afresh even if an interrupted backup of this source exists',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      ...repositoryOptions,
      json: { type: 'boolean' },
      'no-resume': { type: 'boolean' },
    });
    const [source, ...extra] = positionals;
    if (!source) throw new UsageError('which disk or image? give the source path');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const repo = await openRepository(values);
    const reader = await openReader(source);
    try {
      const described = await describeSource(source, reader);
      const identity = described.identity;
      if (!values.json) {
        for (const warning of described.warnings) process.stderr.write(`warning: ${warning}\n`);
        if (described.inUse.length > 0) {
          process.stderr.write(
            `warning: ${identity.path} is in use (${described.inUse.join('; ')}); without the tap this point is only crash-consistent\n`,
          );
        }
      }
      const { parent, checkpoint } = await findRelatives(repo, identity, !values['no-resume']);
      const progress = values.json ? null : progressLine('backup');
      const writer = await PointWriter.create(repo, {
        source: identity,
        partitions: described.partitions,
        usedRanges: described.usedRanges,
        consistency: described.consistency,
        parent,
        resume: checkpoint,
        onProgress: (p) => progress?.update(p.doneBytes, p.totalBytes),
      });
      if (checkpoint && !values.json) process.stderr.write(`resuming interrupted backup ${checkpoint.id}\n`);
      const session = new SnapshotSession({
        reader,
        usedRanges: described.usedRanges ?? [{ start: 0, length: reader.size }],
        unitSize: repo.chunkSize,
        container: new MemoryContainer({ capacityBytes: 64 * repo.chunkSize, slotSize: repo.chunkSize }),
        sink: writer,
        onlyRanges: writer.rangesToRead(),
      });
      const interrupt = () =>
        session.cancel('interrupted by a signal; run the same backup again to resume it');
      process.once('SIGINT', interrupt);
      process.once('SIGTERM', interrupt);
      session.arm();
      try {
        await session.run();
      } catch (error) {
        throw new ExitError(
          `backup of ${identity.path} stopped: ${(error as Error).message}`,
          ExitCode.failed,
        );
      } finally {
        process.off('SIGINT', interrupt);
        process.off('SIGTERM', interrupt);
        progress?.end();
      }
      const manifest = writer.result;
      if (values.json) {
        process.stdout.write(
          `${JSON.stringify({ point: repo.summarize(manifest), stats: manifest.stats })}\n`,
        );
      } else {
        const s = manifest.stats;
        process.stdout.write(
          `Restore point ${manifest.id} of ${identity.path}: used ${formatBytes(s.usedBytes)}, changed ${formatBytes(s.changedBytes)}, ` +
            `stored ${formatBytes(s.storedBytes)} (${s.newChunks} new chunks)\n`,
        );
      }
      return ExitCode.ok;
    } finally {
      await reader.close();
      await repo.close();
    }
  },
};
