// `diskline verify --repo R [--read-data]`: checks the repository's structure (or every byte) and names each
// damaged restore point; exit code 4 when anything is damaged.
import { verifyRepository } from '../../repository/verify.ts';
import { formatBytes, openRepository, repositoryHelp, repositoryOptions } from '../repository-access.ts';
import { ExitCode, parseVerbArgs, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'verify --repo R [--read-data] [--json]',
  summary: 'Check a repository; --read-data also decrypts and checks every chunk',
  help: `${repositoryHelp}\n  --read-data            read, decrypt, decompress and re-hash every chunk\n  --json                 print the report`,
  async run(args) {
    const { values } = parseVerbArgs(args, {
      ...repositoryOptions,
      'read-data': { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const repo = await openRepository(values);
    try {
      const report = await verifyRepository(repo, { readData: values['read-data'] === true });
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
            ? `Repository ${repo.path} is sound: ${report.pointsChecked} points, ${report.chunksChecked} chunks${values['read-data'] ? `, ${formatBytes(report.bytesRead)} read and checked` : ''}\n`
            : `Repository ${repo.path}: ${report.damagedPoints.length} damaged point(s), ${report.problems.length} other problem(s)\n`,
        );
      }
      return report.ok ? ExitCode.ok : ExitCode.damaged;
    } finally {
      await repo.close();
    }
  },
};
