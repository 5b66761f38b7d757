// Starts engine processes for the supervisor: elevated (pkexec / sudo-prompt, per elevation.ts) or as the
// user. An elevated engine is detached so that it outlives the window and keeps running schedules; the
// user's own engine ends with the shell.
import { type ChildProcess, spawn } from 'node:child_process';
import { type Clock, systemClock } from '../protocol/clock.ts';
import {
  type ElevatedLaunch,
  type ElevationOutcome,
  pkexecOutcome,
  spawnErrorOutcome,
  sudoPromptOutcome,
} from './elevation.ts';

/** Resolves true once the engine answers; the launcher polls it while the OS dialog is open. */
export type SocketProbe = () => Promise<boolean>;

const probeIntervalMs = 250;
/** The user may take a while in the password dialog; after this the attempt counts as failed. */
const elevationTimeoutMs = 5 * 60_000;

async function waitForSocketOrEnd(
  probe: SocketProbe,
  ended: Promise<ElevationOutcome>,
  timeoutMs: number,
  clock: Clock,
): Promise<ElevationOutcome> {
  let outcome: ElevationOutcome | null = null;
  void ended.then((o) => (outcome = o));
  const deadline = clock.now() + timeoutMs;
  while (clock.now() < deadline) {
    if (outcome) return outcome;
    if (await probe()) return { kind: 'started' };
    // An engine (or dialog) that ends is reported at once, not at the next probe.
    await Promise.race([clock.sleep(probeIntervalMs), ended]);
  }
  return outcome ?? { kind: 'failed', detail: `the engine did not answer within ${timeoutMs / 1000} s` };
}

type SudoPromptExec = (
  command: string,
  options: { name: string },
  callback: (error?: Error, stdout?: string | Buffer, stderr?: string | Buffer) => void,
) => void;

export async function startElevatedEngine(
  launch: ElevatedLaunch,
  probe: SocketProbe,
  timeoutMs = elevationTimeoutMs,
  clock: Clock = systemClock,
): Promise<ElevationOutcome> {
  if (launch.kind === 'unsupported') return { kind: 'unavailable', detail: launch.reason };
  if (launch.kind === 'sudo-prompt') {
    const { exec } = (await import('@vscode/sudo-prompt')) as { exec: SudoPromptExec };
    const ended = new Promise<ElevationOutcome>((resolve) =>
      // The callback comes when the dialog is dismissed or when the engine exits; a running engine is found by the probe.
      exec(launch.commandLine, { name: launch.name }, (error) =>
        resolve(error ? sudoPromptOutcome(error) : { kind: 'failed', detail: 'the engine exited' }),
      ),
    );
    return waitForSocketOrEnd(probe, ended, timeoutMs, clock);
  }
  let child: ChildProcess;
  const ended = new Promise<ElevationOutcome>((resolve) => {
    child = spawn(launch.command, launch.args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => (stderr = (stderr + text).slice(-4096)));
    child.once('error', (error) => resolve(spawnErrorOutcome(error)));
    child.once('exit', (code) => resolve(pkexecOutcome(code, stderr)));
  });
  const outcome = await waitForSocketOrEnd(probe, ended, timeoutMs, clock);
  if (outcome.kind === 'started') {
    // Let it outlive the shell: it is the engine now, schedules and all.
    child!.stderr!.destroy();
    child!.unref();
  } else if (child!.exitCode === null && child!.pid !== undefined) {
    child!.kill();
  }
  return outcome;
}

/**
 * Starts `enginePath daemon` as the user, listening at socketPath with its state in stateDir (the service's
 * /var/lib/diskline is root's). The returned process ends with the shell.
 */
export function startUserEngine(
  enginePath: string,
  socketPath: string,
  stateDir: string,
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(enginePath, ['daemon', '--socket', socketPath], {
      env: { ...process.env, DISKLINE_STATE_DIR: stateDir },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    child.once('error', (error) => reject(new Error(`could not run ${enginePath}: ${error.message}`)));
    child.once('spawn', () => resolve(child));
  });
}
