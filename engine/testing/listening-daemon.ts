// For tests: runs `diskline daemon` as a child process and resolves once it says it is listening (its
// "listening on" line), so a test waits for the daemon itself rather than polling its socket on a timer.
import { type ChildProcess, spawn } from 'node:child_process';

export interface DaemonProcess {
  readonly child: ChildProcess;
  /** The daemon's stderr so far (its last 16 KiB), for failure messages. */
  stderr(): string;
}

/** Spawns `command args` and waits for its "diskline daemon: listening on" line; rejects if it exits first. */
export function startDaemonProcess(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<DaemonProcess> {
  const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const daemon: DaemonProcess = { child, stderr: () => stderr };
  child.stderr!.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null, signal: string | null) =>
      reject(new Error(`the daemon exited (${signal ?? code}) before it listened: ${stderr}`));
    child.once('exit', onExit);
    child.once('error', reject);
    // Keeps reading after the line too, so a chatty daemon never blocks on a full pipe.
    child.stderr!.on('data', (text: string) => {
      stderr = (stderr + text).slice(-16384);
      if (/^diskline daemon: listening on /m.test(stderr)) {
        child.off('exit', onExit);
        resolve(daemon);
      }
    });
  });
}
