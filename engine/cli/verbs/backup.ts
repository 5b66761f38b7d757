// `diskline backup <source> --repo R`: one restore point of a disk or image. Reads the used units through a
// snapshot session (with no writers to intercept for an image or an unmounted device), deduplicates against
// the repository, resumes an interrupted backup of the same source, and prints the point and its stats.
import { resolve } from 'node:path';
import type { SocketClient } from '../../api/client.ts';
import { MemoryContainer } from '../../container/memory.ts';
import { openReader } from '../../device/open.ts';
import { FilesystemDamagedError } from '../../filesystems/types.ts';
import { describeSource, findRelatives } from '../../repository/point-source.ts';
import { PointWriter } from '../../repository/point-writer.ts';
import { SnapshotSession } from '../../snapshot/session.ts';
import {
  callFailure,
  connectDaemon,
  followJob,
  jobFailure,
  notePassphrase,
  repoForDaemon,
} from '../daemon-jobs.ts';
import {
  formatBytes,
  openRepository,
  progressLine,
  repositoryHelp,
  repositoryOptions,
  requireRepo,
} from '../repository-access.ts';
import { ExitCode, ExitError, parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'backup <source> --repo R [--pre-hook CMD] [--post-hook CMD] [--json] [--no-resume] [--strict]',
  summary: 'Back up a disk or image into a new restore point',
  help:
    `${repositoryHelp}\n  --json                 print {point, stats} when done\n` +
    '  --no-resume            start afresh even if an interrupted backup of this source exists\n' +
    '  --pre-hook CMD         attached volumes: a shell command the daemon runs before the freeze\n' +
    '  --post-hook CMD        attached volumes: a shell command the daemon runs after the thaw\n' +
    '  --strict               refuse a source whose used-block map cannot be trusted (damaged file-system metadata)\n' +
    '                         instead of copying it whole with a warning (exit 4)\n' +
    '  With the engine daemon running, the daemon takes the backup (an attached volume through its session:\n' +
    '  freeze, arm, thaw) with its own repository passphrase; otherwise this command does, offline.',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      ...repositoryOptions,
      json: { type: 'boolean' },
      'no-resume': { type: 'boolean' },
      'pre-hook': { type: 'string' },
      'post-hook': { type: 'string' },
      strict: { type: 'boolean' },
    });
    const [source, ...extra] = positionals;
    if (!source) throw new UsageError('which disk or image? give the source path');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const hooks = { preHook: values['pre-hook'], postHook: values['post-hook'] };
    const strict = values.strict ?? false;
    const daemon = await connectDaemon();
    if (daemon) {
      try {
        return await backupThroughDaemon(daemon, source, requireRepo(values), { ...hooks, strict }, values);
      } finally {
        await daemon.close();
      }
    }
    if (hooks.preHook || hooks.postHook) {
      throw new UsageError(
        `--pre-hook/--post-hook need a volume attached in the engine daemon (the hooks run around its freeze); ` +
          `start \`diskline daemon\`, run \`diskline attach ${source}\`, then back it up again`,
      );
    }
    const repo = await openRepository(values);
    const reader = await openReader(source);
    try {
      const described = await describeSource(source, reader, { strict }).catch((error: unknown) => {
        if (!(error instanceof FilesystemDamagedError)) throw error;
        throw new ExitError(`backup of ${source} refused (--strict): ${error.message}`, ExitCode.damaged);
      });
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
        contentStamp: described.contentStamp,
        onProgress: (p) => progress?.update(p.doneBytes, p.totalBytes),
      });
      if (writer.resumed && !values.json) {
        process.stderr.write(
          writer.resumed.rereadBecause
            ? `finishing interrupted backup ${checkpoint!.id} by reading everything again: ${writer.resumed.rereadBecause}\n`
            : `resuming interrupted backup ${checkpoint!.id}\n`,
        );
      }
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

/** The backup as a daemon job; prints what the in-process path prints ({point, stats} with --json). */
async function backupThroughDaemon(
  daemon: SocketClient,
  source: string,
  repoText: string,
  hooks: { preHook?: string | undefined; postHook?: string | undefined; strict?: boolean },
  values: {
    json?: boolean | undefined;
    'no-resume'?: boolean | undefined;
    'password-file'?: string | undefined;
  },
): Promise<number> {
  notePassphrase(values);
  const repo = repoForDaemon(repoText);
  const job = await followJob(
    daemon,
    () =>
      daemon
        .call('backup.start', {
          source: resolve(source),
          repo,
          ...hooks,
          ...(values['no-resume'] ? { noResume: true } : {}),
        })
        .catch((error: unknown) => callFailure('backup', error)),
    values.json ? null : 'backup',
  );
  if (job.state !== 'succeeded') throw jobFailure(`backup of ${resolve(source)}`, job);
  const result = job.result ?? {};
  const pointId = String(result.point);
  const stats = {
    usedBytes: Number(result.usedBytes),
    changedBytes: Number(result.changedBytes),
    storedBytes: Number(result.storedBytes),
    zeroUnits: Number(result.zeroUnits),
    newChunks: Number(result.newChunks),
  };
  const warnings = Array.isArray(result.warnings) ? (result.warnings as string[]) : [];
  if (values.json) {
    const points = await daemon
      .call('points.list', { repo })
      .catch((error: unknown) => callFailure('backup', error));
    const point = points.find((p) => p.id === pointId) ?? { id: pointId };
    process.stdout.write(`${JSON.stringify({ point, stats })}\n`);
  } else {
    for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
    if (result.resumed) process.stderr.write(`resumed interrupted backup ${String(result.resumed)}\n`);
    process.stdout.write(
      `Restore point ${pointId} of ${resolve(source)} (${String(result.consistency)}): used ${formatBytes(stats.usedBytes)}, ` +
        `changed ${formatBytes(stats.changedBytes)}, stored ${formatBytes(stats.storedBytes)} (${stats.newChunks} new chunks)\n`,
    );
  }
  return ExitCode.ok;
}
