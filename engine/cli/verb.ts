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

/** Exit codes of the API's error codes (EngineCallError.code): bad usage 2, refused for safety or not allowed 3. */
const apiErrorExits: Record<string, number> = {
  'bad-request': ExitCode.usage,
  'unknown-method': ExitCode.usage,
  refused: ExitCode.refused,
  forbidden: ExitCode.refused,
};

/** The exit code an error that ended a verb stands for: its own, its API error code's, or 1. */
export function exitCodeFor(error: unknown): number {
  const { exitCode, code } = (error ?? {}) as { exitCode?: unknown; code?: unknown };
  if (typeof exitCode === 'number') return exitCode;
  if (typeof code === 'string') return apiErrorExits[code] ?? ExitCode.failed;
  return ExitCode.failed;
}

/** node:util parseArgs, with unknown options and missing values reported as usage errors. */
export function parseVerbArgs<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}
