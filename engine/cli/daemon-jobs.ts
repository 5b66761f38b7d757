// The repository verbs through the engine daemon: when its socket answers, a verb starts the daemon's job and
// follows the job's 'job.updated' events to the end (progress bar on a terminal, Ctrl-C cancels the job), so a
// backup of a volume attached in the daemon goes through that volume's session (freeze, arm, thaw).
// The daemon opens repositories with its own passphrase (its DISKLINE_PASSWORD or DISKLINE_PASSWORD_FILE):
// the protocol carries none, so a CLI's --password-file does not reach it.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Job } from '../../protocol/model.ts';
import { EngineCallError, SocketClient } from '../api/client.ts';
import { socketPath } from '../config/socket-path.ts';
import { progressLine } from './repository-access.ts';
import { ExitCode, ExitError, exitCodeFor } from './verb.ts';

/** The daemon when its socket answers (the same detection `diskline attach` uses), else null. */
export async function connectDaemon(): Promise<SocketClient | null> {
  return SocketClient.connect(socketPath()).catch(() => null);
}

/** Says, once, that a --password-file given to this command is not what the daemon uses. */
export function notePassphrase(values: {
  'password-file'?: string | undefined;
  json?: boolean | undefined;
}): void {
  if (values['password-file'] && !values.json) {
    process.stderr.write(
      'note: the engine daemon opens the repository with its own passphrase (its DISKLINE_PASSWORD or DISKLINE_PASSWORD_FILE); --password-file is not sent to it\n',
    );
  }
}

/** An API error as the verb's exit: refused → 3, bad request → 2, others → 1. */
export function callFailure(verbName: string, error: unknown): never {
  if (error instanceof EngineCallError) throw new ExitError(error.message, exitCodeFor(error));
  throw new ExitError(`${verbName}: ${(error as Error).message}`, ExitCode.failed);
}

const ended = new Set<Job['state']>(['succeeded', 'failed', 'cancelled', 'interrupted']);

/**
 * Starts a job with `start` and waits for its end, drawing progress when `label` is given. SIGINT/SIGTERM ask
 * the daemon to cancel the job (jobs.cancel); the job's own end is still awaited, so its outcome is reported.
 */
export async function followJob(
  client: SocketClient,
  start: () => Promise<Job>,
  label: string | null,
): Promise<Job> {
  const progress = label ? progressLine(label) : null;
  // Events may arrive before start() resolves: keep the latest per job until the id is known.
  const latest = new Map<string, Job>();
  let jobId: string | null = null;
  let settle: ((job: Job) => void) | null = null;
  const onUpdate = (job: Job) => {
    if (jobId === null) {
      latest.set(job.id, job);
      return;
    }
    if (job.id !== jobId) return;
    progress?.update(job.doneBytes, job.totalBytes);
    if (ended.has(job.state)) settle?.(job);
  };
  const unsubscribe = client.on('job.updated', onUpdate);
  let cancelAsked = false;
  let cancelSent = false;
  const sendCancel = () => {
    if (jobId === null || cancelSent) return;
    cancelSent = true;
    client.call('jobs.cancel', { id: jobId }).catch(() => {});
  };
  // A signal before the job's id is known is remembered and sent as soon as it is.
  const interrupt = () => {
    cancelAsked = true;
    sendCancel();
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  try {
    const finished = new Promise<Job>((resolve, reject) => {
      settle = resolve;
      // The daemon going away mid-job: the job's outcome is unknown here.
      client.onClose(() =>
        reject(
          new ExitError(
            "lost the engine daemon before the job ended; once it is back, its log reports the job interrupted and 'diskline points --repo …' lists the points it made",
            ExitCode.failed,
          ),
        ),
      );
    });
    finished.catch(() => {}); // handled below when awaited; a close after the end is no failure
    const job = await start();
    jobId = job.id;
    if (cancelAsked) sendCancel();
    const early = latest.get(job.id);
    latest.clear();
    const current = early ?? job;
    if (ended.has(current.state)) return current;
    return await finished;
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    unsubscribe();
    progress?.end();
  }
}

/** A repository as the daemon should find it: an existing path made absolute (the daemon's cwd is not ours),
 * otherwise the text as given (a repository name from the engine's config). */
export function repoForDaemon(repo: string): string {
  return existsSync(repo) ? resolve(repo) : repo;
}

/** A job that did not succeed, as the verb's exit (1): its error, or that it was cancelled. */
export function jobFailure(verbName: string, job: Job): ExitError {
  const why = job.error ?? (job.state === 'cancelled' ? 'cancelled' : job.state);
  return new ExitError(`${verbName} ${job.state}: ${why}`, ExitCode.failed);
}
