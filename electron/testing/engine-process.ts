// The real engine as a child process for the shell's integration tests: `diskline daemon` on a socket in a
// temp dir, its state beside it. Stopped with SIGTERM (the daemon's orderly shutdown), then SIGKILL.
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { EngineLink } from '../engine-link.ts';

const launcher = join(import.meta.dirname, '..', '..', 'bin', 'diskline');

export class EngineProcess {
  readonly socketPath: string;
  readonly #child: ChildProcess;
  #stderr = '';

  private constructor(socketPath: string, child: ChildProcess) {
    this.socketPath = socketPath;
    this.#child = child;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => (this.#stderr = (this.#stderr + text).slice(-8192)));
  }

  get stderr(): string {
    return this.#stderr;
  }

  static async start(dir: string, env: Record<string, string> = {}): Promise<EngineProcess> {
    const socketPath = join(dir, 'engine.sock');
    const child = spawn(launcher, ['daemon', '--socket', socketPath], {
      env: { ...process.env, DISKLINE_STATE_DIR: join(dir, 'state'), ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const engine = new EngineProcess(socketPath, child);
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) {
        throw new Error(`diskline daemon exited with ${child.exitCode}: ${engine.stderr.trim()}`);
      }
      try {
        (await EngineLink.connect(socketPath, () => {}, 500)).close();
        return engine;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await engine.stop();
    throw new Error(`diskline daemon did not listen on ${socketPath} within 15 s: ${engine.stderr.trim()}`);
  }

  async stop(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
