// Runs the tools a benchmark compares — Diskline's command line and its peers — to completion, and measures
// them: wall seconds, and CPU seconds from /usr/bin/time, the figure that holds on a busy machine.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const disklineCli = fileURLToPath(new URL('../bin/diskline', import.meta.url));

type Env = Record<string, string | undefined>;

/** Runs `command` with `env` over this process's environment; its stdout, or an error with its stderr. */
export function runTool(command: string, args: string[], env: Env = {}): string {
  return finished(command, args, env, [command, ...args]).stdout;
}

/** Wall and CPU (user + system) seconds of one run of `command`; fails like runTool. */
export function timedTool(
  command: string,
  args: string[],
  env: Env = {},
): { seconds: number; cpuSeconds: number } {
  const started = performance.now();
  const { stderr } = finished('/usr/bin/time', ['-f', 'cpu %U %S', command, ...args], env, [
    command,
    ...args,
  ]);
  const cpu = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(stderr);
  return {
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: cpu ? Number(cpu[1]) + Number(cpu[2]) : Number.NaN,
  };
}

/** Bytes under `path` as du counts them (a repository's size on disk). */
export function duBytes(path: string): number {
  return Number(runTool('du', ['-sb', path]).split('\t')[0]);
}

/** The run's output once it exited 0; otherwise an error naming `commandLine` (the tool, not a wrapper). */
function finished(command: string, args: string[], env: Env, commandLine: string[]) {
  const result = spawnSync(command, args, {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  if (result.status !== 0)
    throw new Error(`${commandLine.join(' ')} failed (${result.status}): ${result.stderr}`);
  return result;
}
