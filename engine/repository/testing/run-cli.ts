// Runs the real `diskline` command line for the repository's tests, with a passphrase in the environment and
// an engine state and daemon socket of the test's own (no daemon: the command hosts the engine itself).
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ownDir = mkdtempSync(join(tmpdir(), 'diskline-cli-state-'));
const ownEnv = {
  DISKLINE_STATE_DIR: join(ownDir, 'state'),
  DISKLINE_SOCKET: join(ownDir, 'no-daemon.sock'),
};

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
      env: { ...process.env, ...ownEnv, DISKLINE_PASSWORD: TEST_PASSWORD, ...env },
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
