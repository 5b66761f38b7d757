// Watching a job in the UI's job view the way a user does: its state badge, polled until the job is no longer
// running or queued, and the alert that says why it failed. Shared by the end-to-end tests that start jobs.
import type { Page } from 'playwright-core';

export interface JobWatch {
  /** How many times to read the badge before giving up waiting (the caller then sees the last state). */
  polls: number;
  intervalMs: number;
  /** Runs before each read of the badge, to sample the view (progress, meter) while the job runs. */
  onPoll?: () => Promise<void>;
}

/** Polls the job view's state badge until the job has ended (or `polls` run out); returns the badge's text. */
export async function waitForJobEnd(page: Page, watch: JobWatch): Promise<string | null> {
  const badge = page.locator('.view-head .badge');
  for (let i = 0; i < watch.polls; i++) {
    await watch.onPoll?.();
    const state = (await badge.textContent()) ?? '';
    if (state !== 'Running' && state !== 'Queued') break;
    await page.waitForTimeout(watch.intervalMs);
  }
  return badge.textContent();
}

/** The first alert's text (why a job failed), or null when there is none. */
export async function firstAlertText(page: Page): Promise<string | null> {
  return page
    .getByRole('alert')
    .first()
    .textContent()
    .catch(() => null);
}
