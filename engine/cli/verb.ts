// What one CLI verb is: a usage line, a summary and a run function returning the exit code.
import { type ParseArgsConfig, parseArgs } from 'node:util';

export const ExitCode = { ok: 0, failed: 1, usage: 2, refused: 3, damaged: 4 } as const;

export interface Verb {
  /** e.g. "inspect <device|image> [--json]" */
  usage: string;
  summary: string;
  /** Option descriptions shown by --help. */
  help?: string;
  run(args: string[]): Promise<number>;
}

/** Bad command-line input: printed with the verb's usage, exit code 2. */
export class UsageError extends Error {}

/** An error that carries its own exit code (e.g. refused for safety: 3). */
export class ExitError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** node:util parseArgs, with unknown options and missing values reported as usage errors. */
export function parseVerbArgs<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}
