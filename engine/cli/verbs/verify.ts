// `diskline verify --repo R [--read-data]`: checks the repository's structure (or every byte) through the
// engine's verify job and names each damaged restore point; damage found is reported as damage (exit 4).
import { DamageError, UsageError } from '../../../protocol/failure.ts';
import { parseReadDataSubset } from '../../repository/verify.ts';
import { followJob, openEngineClient, repoForEngine, requireSucceeded } from '../engine-jobs.ts';
import { formatBytes, repositoryHelp, repositoryOptions, requireRepo } from '../repository-access.ts';
import { parseVerbArgs, type Verb } from '../verb.ts';

/** The verify report as the job gives it (repository/verify.ts VerifyReport). */
interface Report {
  ok: boolean;
  pointsChecked: number;
  chunksChecked: number;
  bytesRead: number;
  damagedPoints: { id: string; problems: string[] }[];
  problems: string[];
}

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
    const readDataSubset = values['read-data-subset'];
    if (readDataSubset !== undefined) {
      try {
        parseReadDataSubset(readDataSubset);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
    }
    const readData = values['read-data'] === true || readDataSubset !== undefined;
    const repo = repoForEngine(requireRepo(values));
    const client = await openEngineClient(values);
    let job: Awaited<ReturnType<typeof followJob>>;
    try {
      job = await followJob(
        client,
        () => client.call('verify.start', { repo, readData, ...(readDataSubset ? { readDataSubset } : {}) }),
        values.json ? null : 'verify',
      );
    } finally {
      await client.close();
    }
    // Damage found ends the job failed with its report: print the report, then end as damage.
    const report = job.result && 'ok' in job.result ? (job.result as unknown as Report) : null;
    if (job.state !== 'succeeded' && (job.failureKind !== 'damage' || !report)) {
      requireSucceeded(`verify of ${repo}`, job);
    }
    if (!report) throw new Error(`verify of ${repo} gave no report (engine bug)`);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(report)}\n`);
    } else {
      for (const point of report.damagedPoints) {
        process.stdout.write(
          `DAMAGED point ${point.id}:\n${point.problems.map((p) => `  - ${p}`).join('\n')}\n`,
        );
      }
      for (const problem of report.problems) process.stdout.write(`problem: ${problem}\n`);
      if (report.ok) {
        process.stdout.write(
          `Repository ${repo} is sound: ${report.pointsChecked} points, ${report.chunksChecked} chunks${readData ? `, ${formatBytes(report.bytesRead)} read and checked${readDataSubset ? ` (sample ${readDataSubset})` : ''}` : ''}\n`,
        );
      }
    }
    if (!report.ok) {
      throw new DamageError(
        `repository ${repo}: ${report.damagedPoints.length} damaged point(s), ${report.problems.length} other problem(s)`,
      );
    }
  },
};
