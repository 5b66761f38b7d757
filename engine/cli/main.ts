// The `diskline` command line: finds the verb's module (one file per verb in ./verbs) and runs it.
// Exit codes: 0 success, 1 the operation failed, 2 bad usage, 3 refused for safety, 4 damaged data found.
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ExitCode, exitCodeFor, UsageError, type Verb } from './verb.ts';

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
      `Run 'diskline <verb> --help' for a verb's options. Repository passphrase: DISKLINE_PASSWORD or --password-file.\n`,
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
    return await verb.run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`diskline ${name}: ${error.message}\nUsage: diskline ${verb.usage}\n`);
      return ExitCode.usage;
    }
    const exit = exitCodeFor(error);
    process.stderr.write(`diskline ${name}: ${(error as Error).message}\n`);
    if (process.env.DISKLINE_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    return exit;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await main(process.argv.slice(2));
}
