// A real `diskline daemon` in a child process for tests that kill or restart it: state, socket and tap helpers
// under one temporary directory, a connected client once it answers, and its pid (for hooks that kill it).
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SocketClient } from '../api/client.ts';

const cli = fileURLToPath(new URL('../../bin/diskline', import.meta.url));

/** The environment of a daemon whose state, socket and tap helpers all live under `dir`. */
export function daemonEnvironment(dir: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DISKLINE_STATE_DIR: join(dir, 'state'),
    DISKLINE_SOCKET: join(dir, 'engine.sock'),
    DISKLINE_TAP_DIR: join(dir, 'taps'),
    DISKLINE_PASSWORD: 'daemon test',
  };
}

export interface DaemonProcess {
  child: ChildProcess;
  client: SocketClient;
  exited: Promise<void>;
  /** What it wrote to its log (stderr) so far. */
  log(): string;
  /** Sends `signal` and resolves once the process has exited. */
  stop(signal: NodeJS.Signals): Promise<void>;
}

/** Starts `diskline daemon` and resolves once it says it listens (its log line) and answers engine.status. */
export async function startDaemon(dir: string): Promise<DaemonProcess> {
  const env = daemonEnvironment(dir);
  const child = spawn(cli, ['daemon'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let log = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      if (log.includes('diskline daemon: listening on')) resolve();
    });
    void exited.then(() => reject(new Error(`the daemon exited before listening: ${log}`)));
  });
  const client = await SocketClient.connect(env.DISKLINE_SOCKET as string);
  await client.call('engine.status', {});
  return {
    child,
    client,
    exited,
    log: () => log,
    async stop(signal) {
      await client.close().catch(() => undefined);
      child.kill(signal);
      await exited;
    },
  };
}
