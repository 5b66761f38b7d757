// Runs the real `diskline` command line for the repository's tests, with a passphrase in the environment.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const cliPath = fileURLToPath(new URL('../../../bin/diskline', import.meta.url));
export const TEST_PASSWORD = 'correct horse battery staple';

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(cliPath, args, {
      env: { ...process.env, DISKLINE_PASSWORD: TEST_PASSWORD, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Runs the CLI and fails with its output unless it exits 0; returns stdout parsed as JSON when asked. */
export async function runCliOk(args: string[]): Promise<CliRun> {
  const run = await runCli(args);
  if (run.status !== 0)
    throw new Error(`diskline ${args.join(' ')} exited ${run.status}\n${run.stderr}${run.stdout}`);
  return run;
}
