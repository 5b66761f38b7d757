// How the job verbs (backup, restore, verify, prune) reach the engine: through one client — the daemon when its
// socket answers, otherwise the same engine hosted in this process for the one command — start the job and
// follow its 'job.updated' events to the end (a progress bar on a terminal; Ctrl-C asks the engine to cancel
// the job and still waits for its outcome). A job that did not succeed is thrown as an error of its kind
// (damage, refusal, usage, failure); main.ts alone turns kinds into exit codes.
// A daemon opens repositories with its own passphrase (its DISKLINE_PASSWORD_FILE or DISKLINE_PASSWORD): the
// protocol carries none, so --password-file reaches only an engine hosted here.

import { existsSync } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import { resolve } from 'node:path';
import { KindedError, UsageError } from '../../protocol/failure.ts';
import type { Job } from '../../protocol/model.ts';
import { type ClosableEngineClient, connectEngine, SocketClient } from '../api/client.ts';
import { progressLine } from './repository-access.ts';

/**
 * The engine for one command. A --password-file is checked here (a usage error when unreadable) and given to
 * an engine hosted in this process; a daemon keeps its own passphrase, which `--json`-less runs are told.
 */
export async function openEngineClient(values: {
  'password-file'?: string | undefined;
  json?: boolean | undefined;
}): Promise<ClosableEngineClient> {
  const passwordFile = values['password-file'];
  if (passwordFile) {
    await access(passwordFile, constants.R_OK).catch((error: NodeJS.ErrnoException) => {
      throw new UsageError(`cannot read the passphrase file ${passwordFile}: ${error.code ?? error.message}`);
    });
  }
  const client = await connectEngine({ passwordFile: passwordFile ? resolve(passwordFile) : undefined });
  if (client.kind === 'daemon' && passwordFile && !values.json) {
    process.stderr.write(
      'note: the engine daemon opens the repository with its own passphrase (its DISKLINE_PASSWORD_FILE or DISKLINE_PASSWORD); --password-file is not sent to it\n',
    );
  }
  return client;
}

/** A repository as the engine should find it: an existing path made absolute (a daemon's cwd is not ours),
 * otherwise the text as given (a repository name from the engine's config). */
export function repoForEngine(repo: string): string {
  return existsSync(repo) ? resolve(repo) : repo;
}

const ended = new Set<Job['state']>(['succeeded', 'failed', 'cancelled', 'interrupted']);

/**
 * Starts a job with `start` and waits for its end, drawing progress when `label` is given and calling
 * `onUpdate` with each state of it. SIGINT/SIGTERM ask the engine to cancel the job (jobs.cancel); the job's own
 * end is still awaited, so its outcome is reported.
 */
export async function followJob(
  client: ClosableEngineClient,
  start: () => Promise<Job>,
  label: string | null,
  onUpdate: (job: Job) => void = () => {},
): Promise<Job> {
  const progress = label ? progressLine(label) : null;
  // Events may arrive before start() resolves: keep the latest per job until the id is known.
  const latest = new Map<string, Job>();
  let jobId: string | null = null;
  let settle: ((job: Job) => void) | null = null;
  const unsubscribe = client.on('job.updated', (job) => {
    if (jobId === null) {
      latest.set(job.id, job);
      return;
    }
    if (job.id !== jobId) return;
    progress?.update(job.doneBytes, job.totalBytes);
    onUpdate(job);
    if (ended.has(job.state)) settle?.(job);
  });
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
      if (client instanceof SocketClient) {
        client.onClose(() =>
          reject(
            new Error(
              'lost the engine daemon before the job ended; its outcome is in the daemon’s job list when it is back',
            ),
          ),
        );
      }
    });
    finished.catch(() => {}); // handled below when awaited; a close after the end is no failure
    const job = await start();
    jobId = job.id;
    if (cancelAsked) sendCancel();
    const early = latest.get(job.id);
    latest.clear();
    const current = early ?? job;
    onUpdate(current);
    if (ended.has(current.state)) return current;
    return await finished;
  } finally {
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    unsubscribe();
    progress?.end();
  }
}

/** Throws a job that did not succeed as an error of its kind, saying what `what` was and why it ended. */
export function requireSucceeded(what: string, job: Job): void {
  if (job.state === 'succeeded') return;
  const why = job.error ?? (job.state === 'cancelled' ? 'cancelled' : job.state);
  throw new KindedError(job.failureKind ?? 'failure', `${what} ${job.state}: ${why}`);
}
