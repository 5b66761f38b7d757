// What one CLI verb is: a usage line, a summary and a run function. A verb returns when it did what it says and
// throws otherwise — an error of its kind (protocol/failure.ts); main.ts turns the kind into the exit code.
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError } from '../../protocol/failure.ts';

export { UsageError };

export interface Verb {
  /** e.g. "inspect <device|image> [--json]" */
  usage: string;
  summary: string;
  /** Option descriptions shown by --help. */
  help?: string;
  run(args: string[]): Promise<void>;
}

/** node:util parseArgs, with unknown options and missing values reported as usage errors. */
export function parseVerbArgs<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}
