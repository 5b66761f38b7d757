// Runs every benchmark in bench/ one after another (each prints its own figures and ratios against peers).
// Arguments after `--` are passed to each, e.g. `npm run bench -- --size 512M`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const benchDir = fileURLToPath(new URL('.', import.meta.url));
const only = process.env.DISKLINE_BENCH;
const scripts = readdirSync(benchDir)
  .filter((name) => name.endsWith('.ts') && name !== 'run.ts' && !name.endsWith('.test.ts'))
  .filter((name) => !only || name.includes(only))
  .sort();

let failed = 0;
for (const script of scripts) {
  process.stdout.write(`\n== ${script}\n`);
  const run = spawnSync(process.execPath, [`${benchDir}${script}`, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  if (run.status !== 0) failed += 1;
}
process.exitCode = failed ? 1 : 0;
