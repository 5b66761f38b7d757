// `diskline diff <a> <b> --repo R`: which byte ranges of the disk differ between two restore points (by chunk
// id, unit by unit, without reading any data), and how many bytes that is.
import { isUsed, type Manifest, rangesOfUnits } from '../../repository/manifest.ts';
import { writeJson } from '../json-output.ts';
import { formatBytes, openRepository, repositoryHelp, repositoryOptions } from '../repository-access.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

function unitDiffers(a: Manifest, b: Manifest, unit: number): boolean {
  const chunk = (m: Manifest) => {
    if (unit >= m.unitCount || !isUsed(m, unit)) return null;
    const k = m.units[unit]!;
    return k === 0 ? 'zero' : m.chunkIds[k - 1]!.toString('base64');
  };
  return chunk(a) !== chunk(b);
}

export const verb: Verb = {
  usage: 'diff <a> <b> --repo R [--json]',
  summary: 'Show the byte ranges that changed between two restore points',
  help: `${repositoryHelp}\n  --json                 print {a, b, changedBytes, ranges: [{start, length}]}`,
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, { ...repositoryOptions, json: { type: 'boolean' } });
    if (positionals.length !== 2) throw new UsageError('give two restore points to compare');
    const repo = await openRepository(values);
    try {
      const [a, b] = await Promise.all(
        positionals.map(async (ref) => repo.loadManifest(await repo.resolvePointId(ref))),
      );
      if (a!.unitSize !== b!.unitSize) throw new Error('the two points use different unit sizes');
      const unitCount = Math.max(a!.unitCount, b!.unitCount);
      const size = Math.max(a!.source.size, b!.source.size);
      const ranges = rangesOfUnits(unitCount, a!.unitSize, size, (u) => unitDiffers(a!, b!, u));
      const changedBytes = ranges.reduce((sum, r) => sum + r.length, 0);
      if (values.json) {
        writeJson({ a: a!.id, b: b!.id, changedBytes, ranges }, (text) => process.stdout.write(text));
      } else {
        process.stdout.write(
          `${formatBytes(changedBytes)} changed between ${a!.id} and ${b!.id} in ${ranges.length} range(s)\n`,
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
