// Watching a job in the UI's job view the way a user does: its state badge until the job is no longer running
// or queued, what the view showed on the way (recorded in the page as it changes, so a transient state is not
// missed between two looks), and the alert that says why it failed. Shared by the end-to-end tests that start jobs.
import type { Locator, Page } from 'playwright-core';

/** Waits (up to `timeoutMs`, a guard against a hang) until the job view's badge leaves Running/Queued; its text. */
export async function waitForJobEnd(page: Page, timeoutMs = 180_000): Promise<string | null> {
  await page
    .waitForFunction(
      () => {
        const state = document.querySelector('.view-head .badge')?.textContent;
        return state != null && state !== 'Running' && state !== 'Queued';
      },
      undefined,
      { timeout: timeoutMs },
    )
    .catch(() => {});
  return page.locator('.view-head .badge').textContent();
}

let recordings = 0;

/**
 * Records every value an element shows from now on (an attribute, or its text when `attribute` is null), by a
 * MutationObserver in the page. values() returns them in order, repeats dropped.
 */
export async function recordValues(
  element: Locator,
  attribute: string | null,
): Promise<{ values(): Promise<string[]> }> {
  const key = `recording${recordings++}`;
  await element.evaluate(
    (node, { key, attribute }) => {
      const read = () => (attribute ? node.getAttribute(attribute) : node.textContent) ?? '';
      const log: string[] = [read()];
      (window as unknown as Record<string, string[]>)[key] = log;
      new MutationObserver(() => {
        const value = read();
        if (log.at(-1) !== value) log.push(value);
      }).observe(node, { attributes: true, childList: true, subtree: true, characterData: true });
    },
    { key, attribute },
  );
  return {
    values: () =>
      element.page().evaluate((key) => [...(window as unknown as Record<string, string[]>)[key]!], key),
  };
}

/** The first alert's text (why a job failed), or null when there is none. */
export async function firstAlertText(page: Page): Promise<string | null> {
  return page
    .getByRole('alert')
    .first()
    .textContent()
    .catch(() => null);
}
