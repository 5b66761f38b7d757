// Which engine events become desktop notifications, and their words. A job's end is notified when the shell
// saw it running (so reconnecting does not replay old outcomes); a plan run that failed without a job the
// user was told about (the source was missing, the repository locked before the job started) is notified too.
import type { EventData } from '../protocol/messages.ts';
import type { Job } from '../protocol/model.ts';
import { formatBytes } from './tray-model.ts';

export type DesktopNotification = { title: string; body: string; urgent: boolean };

const endedTitle: Record<Job['kind'], [ok: string, failed: string]> = {
  backup: ['Backup finished', 'Backup failed'],
  restore: ['Restore finished', 'Restore failed'],
  verify: ['Verification finished', 'Verification failed'],
  prune: ['Old restore points removed', 'Removing old restore points failed'],
  mount: ['Restore point mounted', 'Mounting failed'],
  drill: ['Test restore passed', 'Test restore failed'],
  copy: ['Restore points copied', 'Copying restore points failed'],
};

/** How long after a job's failure a plan's failure report counts as the same news. */
const sameFailureWindowMs = 60_000;

export class Notifier {
  readonly #seenActive = new Set<string>();
  #lastJobFailureAt = Number.NEGATIVE_INFINITY;

  /** The notification a job.updated event deserves, if any. */
  jobUpdated(job: Job, at = Date.now()): DesktopNotification | null {
    if (job.state === 'queued' || job.state === 'running') {
      this.#seenActive.add(job.id);
      return null;
    }
    if (!this.#seenActive.delete(job.id)) return null;
    // Mounts end when the user unmounts them; no news there.
    if (job.kind === 'mount' || job.state === 'cancelled') return null;
    const [okTitle, failedTitle] = endedTitle[job.kind];
    if (job.state === 'succeeded') {
      const size = job.totalBytes > 0 ? ` (${formatBytes(job.totalBytes)})` : '';
      return { title: okTitle, body: `${job.title}${size}`, urgent: false };
    }
    this.#lastJobFailureAt = at;
    const how = job.state === 'interrupted' ? 'was interrupted' : 'failed';
    return {
      title: failedTitle,
      body: `${job.title} ${how}: ${job.error ?? 'no detail given'}`,
      urgent: true,
    };
  }

  planRan(event: EventData<'plan.ran'>, at = Date.now()): DesktopNotification | null {
    // A successful run was already announced by its job's end.
    if (event.ok) return null;
    if (at - this.#lastJobFailureAt < sameFailureWindowMs) return null;
    return { title: 'Scheduled backup failed', body: `${event.name}: ${event.message}`, urgent: true };
  }
}
