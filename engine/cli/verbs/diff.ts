// `diskline diff <a> <b> --repo R`: which byte ranges of the disk differ between two restore points (by chunk
// id, without reading any data: segments both share are skipped unread), and how many bytes that is.
import { diffPoints } from '../../repository/point-diff.ts';
import { writeJson } from '../json-output.ts';
import { formatBytes, openRepository, repositoryHelp, repositoryOptions } from '../repository-access.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'diff <a> <b> --repo R [--json]',
  summary: 'Show the byte ranges that changed between two restore points',
  help: `${repositoryHelp}\n  --json                 print {a, b, changedBytes, ranges: [{start, length}]}`,
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, { ...repositoryOptions, json: { type: 'boolean' } });
    if (positionals.length !== 2) throw new UsageError('give two restore points to compare');
    const repo = await openRepository(values);
    try {
      const [mapA, mapB] = await Promise.all(
        positionals.map(async (ref) => repo.openMap(await repo.resolvePointId(ref))),
      );
      const a = mapA!.manifest;
      const b = mapB!.manifest;
      if (a.unitSize !== b.unitSize) throw new Error('the two points use different unit sizes');
      const { ranges, changedBytes } = await diffPoints(mapA!, mapB!);
      if (values.json) {
        writeJson({ a: a.id, b: b.id, changedBytes, ranges }, (text) => process.stdout.write(text));
      } else {
        process.stdout.write(
          `${formatBytes(changedBytes)} changed between ${a.id} and ${b.id} in ${ranges.length} range(s)\n`,
        );
        for (const r of ranges.slice(0, 50)) process.stdout.write(`  ${r.start}+${r.length}\n`);
        if (ranges.length > 50) process.stdout.write(`  … ${ranges.length - 50} more (use --json for all)\n`);
      }
      return;
    } finally {
      await repo.close();
    }
  },
};
