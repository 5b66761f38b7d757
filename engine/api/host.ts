// Hosting the engine in a process: open its state, start it, and stop it cleanly on SIGINT/SIGTERM.
// Used by `diskline daemon`, `diskline serve` and the verbs that run a one-shot engine in-process.

import { claimStateDir } from '../config/owner-lock.ts';
import { defaultStateDir, type StateStore, StateStore as Store } from '../config/state.ts';
import { setPassphraseFile } from '../jobs/repository-access.ts';
import { defaultRunners, type JobRunners } from '../jobs/runners.ts';
import { Engine } from './engine.ts';

export interface HostOptions {
  stateDir?: string;
  runners?: (state: StateStore) => JobRunners;
  /** Run plan schedules (daemon, serve); one-shot CLI engines do not. */
  schedules?: boolean;
  /**
   * Report jobs an earlier engine left unfinished as interrupted (daemon, serve). A one-shot CLI engine
   * does not: the jobs on record may belong to a daemon using the same state.
   */
  recover?: boolean;
  /** Re-attach the volumes the config lists (daemon, serve); a one-shot CLI engine does not host volumes. */
  reattach?: boolean;
  /** The passphrase file the CLI was given, for an engine it hosts (jobs/repository-access.ts). */
  passwordFile?: string | undefined;
}

export async function openEngine(options: HostOptions = {}): Promise<Engine> {
  if (options.passwordFile) setPassphraseFile(options.passwordFile);
  // A long-running engine (schedules, job recovery) owns its state; a one-shot CLI engine only borrows it, and
  // keeps its job records in memory: jobs.json is the owner's to rewrite.
  const owns = (options.schedules ?? true) || (options.recover ?? true);
  const state: StateStore = await Store.open(options.stateDir ?? defaultStateDir(), { persistJobs: owns });
  const release = owns ? await claimStateDir(state.dir) : null;
  const engine = new Engine({ state, runners: (options.runners ?? defaultRunners)(state) });
  if (release) engine.onStopped(release);
  try {
    await engine.start({
      schedules: options.schedules ?? true,
      recover: options.recover ?? true,
      reattach: options.reattach ?? true,
    });
  } catch (error) {
    await release?.();
    throw error;
  }
  return engine;
}

/** Resolves when the process is asked to stop (SIGINT or SIGTERM), after running `shutdown`. */
export function untilSignal(shutdown: () => Promise<void>): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      shutdown()
        .catch((error: Error) =>
          process.stderr.write(`diskline: stopping the engine failed: ${error.message}\n`),
        )
        .finally(() => resolve(signal));
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
