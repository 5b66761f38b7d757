// `diskline verify --repo R [--read-data]`: checks the repository's structure (or every byte) and names each
// damaged restore point; exit code 4 when anything is damaged.
import type { SocketClient } from '../../api/client.ts';
import { parseReadDataSubset, verifyRepository } from '../../repository/verify.ts';
import { callFailure, connectDaemon, followJob, notePassphrase, repoForDaemon } from '../daemon-jobs.ts';
import {
  formatBytes,
  openRepository,
  repositoryHelp,
  repositoryOptions,
  requireRepo,
} from '../repository-access.ts';
import { ExitCode, ExitError, parseVerbArgs, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'verify --repo R [--read-data | --read-data-subset N/M|P%] [--json]',
  summary: 'Check a repository; --read-data also decrypts and checks every chunk',
  help: `${repositoryHelp}\n  --read-data            read, decrypt, decompress and re-hash every chunk\n  --read-data-subset S   the same for a sample of the packs: N/M the N-th of M parts (M runs cover all), P% a random share\n  --json                 print the report`,
  async run(args) {
    const { values } = parseVerbArgs(args, {
      ...repositoryOptions,
      'read-data': { type: 'boolean' },
      'read-data-subset': { type: 'string' },
      json: { type: 'boolean' },
    });
    const subsetText = values['read-data-subset'];
    const subset = subsetText === undefined ? undefined : parseReadDataSubset(subsetText);
    // A sample is read in this process (read-only work): the daemon's verify job reads all or nothing.
    const daemon = subset ? null : await connectDaemon();
    if (daemon) {
      try {
        return await verifyThroughDaemon(daemon, requireRepo(values), values);
      } finally {
        await daemon.close();
      }
    }
    const repo = await openRepository(values);
    try {
      const readData = values['read-data'] === true || subset !== undefined;
      const report = await verifyRepository(repo, { readData, readDataSubset: subset });
      if (values.json) {
        process.stdout.write(`${JSON.stringify(report)}\n`);
      } else {
        for (const point of report.damagedPoints) {
          process.stdout.write(
            `DAMAGED point ${point.id}:\n${point.problems.map((p) => `  - ${p}`).join('\n')}\n`,
          );
        }
        for (const problem of report.problems) process.stdout.write(`problem: ${problem}\n`);
        process.stdout.write(
          report.ok
            ? `Repository ${repo.path} is sound: ${report.pointsChecked} points, ${report.chunksChecked} chunks${readData ? `, ${formatBytes(report.bytesRead)} read and checked${subset ? ` (sample ${subsetText})` : ''}` : ''}\n`
            : `Repository ${repo.path}: ${report.damagedPoints.length} damaged point(s), ${report.problems.length} other problem(s)\n`,
        );
      }
      return report.ok ? ExitCode.ok : ExitCode.damaged;
    } finally {
      await repo.close();
    }
  },
};

/**
 * verify.start, followed to the end. The daemon's job fails when something is damaged (its error names the
 * first damaged point) and then carries no report: that is exit 4 with the job's message.
 */
async function verifyThroughDaemon(
  daemon: SocketClient,
  repoText: string,
  values: {
    'read-data'?: boolean | undefined;
    json?: boolean | undefined;
    'password-file'?: string | undefined;
  },
): Promise<number> {
  notePassphrase(values);
  const repo = repoForDaemon(repoText);
  const job = await followJob(
    daemon,
    () =>
      daemon
        .call('verify.start', { repo, readData: values['read-data'] === true })
        .catch((error: unknown) => callFailure('verify', error)),
    values.json ? null : 'verify',
  );
  if (job.state === 'succeeded' && job.result) {
    const report = job.result as { pointsChecked: number; chunksChecked: number; bytesRead: number };
    if (values.json) process.stdout.write(`${JSON.stringify(job.result)}\n`);
    else {
      process.stdout.write(
        `Repository ${repo} is sound: ${report.pointsChecked} points, ${report.chunksChecked} chunks${values['read-data'] ? `, ${formatBytes(report.bytesRead)} read and checked` : ''}\n`,
      );
    }
    return ExitCode.ok;
  }
  const message = job.error ?? job.state;
  if (job.state === 'failed' && message.includes(' is damaged: ')) {
    if (values.json) process.stdout.write(`${JSON.stringify({ ok: false, error: message })}\n`);
    else process.stdout.write(`${message}\n`);
    return ExitCode.damaged;
  }
  throw new ExitError(`verify of ${repo} ${job.state}: ${message}`, ExitCode.failed);
}
