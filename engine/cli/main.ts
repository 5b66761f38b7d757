// The `diskline` command line: finds the verb's module (one file per verb in ./verbs), runs it, and is the one
// place where the outcome becomes the exit code: 0 success, 1 the operation failed, 2 bad usage, 3 refused
// for safety, 4 damaged data found. Below this edge errors say their kind (protocol/failure.ts), not a number.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type FailureKind, failureKindOf } from '../../protocol/failure.ts';
import type { Verb } from './verb.ts';

export const ExitCode = { ok: 0, failed: 1, usage: 2, refused: 3, damaged: 4 } as const;

const exitCodeOfKind: Record<FailureKind, number> = {
  failure: ExitCode.failed,
  usage: ExitCode.usage,
  refusal: ExitCode.refused,
  damage: ExitCode.damaged,
};

const verbsDir = fileURLToPath(new URL('./verbs/', import.meta.url));

async function loadVerb(name: string): Promise<Verb | null> {
  if (!/^[a-z][a-z-]*$/.test(name)) return null;
  const file = `${verbsDir}${name}.ts`;
  if (!existsSync(file)) return null;
  return ((await import(file)) as { verb: Verb }).verb;
}

async function listVerbs(): Promise<Verb[]> {
  const names = (await readdir(verbsDir)).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
  const verbs = await Promise.all(names.map((f) => loadVerb(f.slice(0, -3))));
  return verbs.filter((v): v is Verb => v !== null);
}

async function printHelp(): Promise<void> {
  const verbs = await listVerbs();
  const lines = verbs.map((v) => `  ${v.usage.padEnd(58)} ${v.summary}`);
  process.stdout.write(
    `diskline — back up a whole disk while it is in use, restore it to any restore point\n\nUsage:\n${lines.join('\n')}\n\n` +
      `Run 'diskline <verb> --help' for a verb's options. Repository passphrase: --password-file, DISKLINE_PASSWORD_FILE or DISKLINE_PASSWORD.\n` +
      'Exit codes: 0 done, 1 failed, 2 bad usage, 3 refused for safety, 4 damaged data found.\n',
  );
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    await printHelp();
    return name ? ExitCode.ok : ExitCode.usage;
  }
  const verb = await loadVerb(name);
  if (!verb) {
    process.stderr.write(`diskline: unknown verb '${name}'. Run 'diskline --help' for the list.\n`);
    return ExitCode.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`Usage: diskline ${verb.usage}\n\n${verb.summary}\n\n${verb.help ?? ''}\n`);
    return ExitCode.ok;
  }
  try {
    await verb.run(rest);
    return ExitCode.ok;
  } catch (error) {
    const kind = failureKindOf(error);
    process.stderr.write(`diskline ${name}: ${(error as Error)?.message ?? String(error)}\n`);
    if (kind === 'usage') process.stderr.write(`Usage: diskline ${verb.usage}\n`);
    if (process.env.DISKLINE_DEBUG) process.stderr.write(`${(error as Error)?.stack}\n`);
    return exitCodeOfKind[kind];
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main(process.argv.slice(2));
}
