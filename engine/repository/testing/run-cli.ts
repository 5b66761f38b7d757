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

/** Runs `command` (the CLI, or a wrapper given the CLI as its first argument) and collects its exit and output. */
function collect(command: string, args: string[], env: Record<string, string | undefined>): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
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

export function runCli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliRun> {
  return collect(cliPath, args, env);
}

export interface TimedCliRun extends CliRun {
  seconds: number;
  peakMiB: number;
}

/** The command line under /usr/bin/time: its exit, output, wall time and peak resident memory. */
export async function timedCli(args: string[]): Promise<TimedCliRun> {
  const run = await collect('/usr/bin/time', ['-f', 'DISKLINE-TIME %e %M', cliPath, ...args], {});
  const line = run.stderr.split('\n').find((l) => l.startsWith('DISKLINE-TIME ')) ?? 'DISKLINE-TIME 0 0';
  const [, seconds, kib] = line.split(' ');
  return { ...run, seconds: Number(seconds), peakMiB: Math.round(Number(kib) / 1024) };
}

/** Runs the CLI and fails with its output unless it exits 0; returns stdout parsed as JSON when asked. */
export async function runCliOk(args: string[]): Promise<CliRun> {
  const run = await runCli(args);
  if (run.status !== 0)
    throw new Error(`diskline ${args.join(' ')} exited ${run.status}\n${run.stderr}${run.stdout}`);
  return run;
}
