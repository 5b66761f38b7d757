// The UI against a real engine: browse the timeline of a real repository, run a backup from the UI and watch the
// block map, progress and container meter, then drag a restore point onto a target image, confirm, and check the
// restored bytes equal the source's.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { firstAlertText, recordValues, waitForJobEnd } from './job-view.ts';
import { changeFileInImage, e2eUnavailableReason, makeFixture, sha256 } from './ui-engine.ts';

/** Set to a directory to keep screenshots of each step (for looking at the UI with real data). */
const screenshotDir = process.env.DISKLINE_E2E_SCREENSHOTS;

test('timeline, live backup and drag-to-restore against a real engine', { timeout: 180_000 }, async (t) => {
  const unavailable = e2eUnavailableReason();
  if (unavailable) {
    t.skip(unavailable);
    return;
  }
  const fixture = await makeFixture(32);
  try {
    // A first restore point made by the CLI, so the timeline has history before the UI runs anything.
    await fixture.run(['init', '--repo', fixture.repo]);
    await fixture.run(['backup', fixture.source, '--repo', fixture.repo]);
    const url = await fixture.startServe();
    const page = await fixture.openPage(url);
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const snap = async (name: string) => {
      if (screenshotDir) await page.screenshot({ path: join(screenshotDir, `${name}.png`) });
    };

    await t.test('the timeline lists the repository’s restore point', async () => {
      const timeline = page.getByRole('list', { name: 'Timeline' });
      await timeline.getByRole('listitem').first().waitFor();
      assert.equal(await timeline.getByRole('listitem').count(), 1);
      await timeline.getByRole('button').first().click();
      await page.getByRole('region', { name: 'Selected restore point' }).waitFor();
      await snap('1-timeline');
    });

    await t.test('the drives list shows both images with their file system', async () => {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Drives' }).click();
      const drives = page.getByRole('list', { name: 'Drives' });
      const source = drives.getByRole('listitem').filter({ hasText: fixture.source });
      await source.waitFor();
      await drives.getByRole('listitem').filter({ hasText: fixture.target }).waitFor();
      assert.match((await source.textContent()) ?? '', /ext4/);
      // An image is protected through the tap: the card says so, and offers no boot-time protection.
      const protection = source.getByRole('region', { name: `Protection of ${fixture.source}` });
      await protection.getByText('Tap', { exact: true }).waitFor();
      assert.match((await protection.textContent()) ?? '', /an image file: attach it through the tap/);
      assert.equal(await protection.getByRole('button', { name: 'Protect…' }).count(), 0);
    });

    // Something changed since the first point, so the second one differs from it.
    const firstPointBytes = await readFile(fixture.source);
    const sourceBytes = await changeFileInImage(fixture);

    let backupRan = false;
    await t.test(
      'a backup started from the UI moves the progress bar and fills the block map',
      async (st) => {
        const source = page
          .getByRole('list', { name: 'Drives' })
          .getByRole('listitem')
          .filter({ hasText: fixture.source });
        await source.getByRole('button', { name: 'Back up now' }).click();
        await page.getByRole('heading', { level: 2 }).filter({ hasText: 'Back up' }).waitFor();
        const progress = page.getByRole('progressbar', { name: 'Copy progress' });
        const meter = page.getByRole('meter', { name: 'Intermediate container' });
        await page.getByRole('img', { name: 'Block map' }).waitFor();
        await meter.waitFor();
        // Wait for the job to end, recording the progress bar on the way.
        const progressValues = await recordValues(progress, 'aria-valuenow');
        const state = await waitForJobEnd(page);
        const seen = new Set(await progressValues.values());
        if (state !== 'Done') {
          const reason = (await firstAlertText(page)) ?? state;
          if (/not available yet/.test(reason ?? '')) {
            st.skip(`the engine cannot back up from the API yet: ${reason}`);
            return;
          }
          assert.fail(`the backup ended '${state}': ${reason}`);
        }
        backupRan = true;
        const done = Number(await progress.getAttribute('aria-valuenow'));
        const total = Number(await progress.getAttribute('aria-valuemax'));
        assert.ok(total > 0 && done === total, `progress ends full (${done} of ${total})`);
        assert.ok(seen.size >= 2, `the progress bar moved (saw ${[...seen].join(', ')})`);
        await snap('2-backup-done');
        assert.ok(
          Number(await meter.getAttribute('aria-valuemax')) > 0,
          'the container meter has a capacity',
        );
        const legend = page.getByRole('list', { name: 'Block map legend' });
        assert.match((await legend.textContent()) ?? '', /Copied [1-9]/);
        assert.doesNotMatch((await legend.textContent()) ?? '', /Pending [1-9]/);
      },
    );

    await t.test(
      'dragging the newest point onto the target image restores the source’s bytes',
      async (st) => {
        if (!backupRan) {
          st.skip('no point from the UI backup to restore');
          return;
        }
        await page
          .getByRole('navigation', { name: 'Main' })
          .getByRole('button', { name: 'Timeline' })
          .click();
        const timeline = page.getByRole('list', { name: 'Timeline' });
        await timeline.getByRole('listitem').nth(1).waitFor();
        assert.equal(await timeline.getByRole('listitem').count(), 2);
        const newest = timeline.getByRole('button').last();
        const target = page
          .getByRole('list', { name: 'Restore targets' })
          .getByRole('listitem')
          .filter({ hasText: fixture.target });
        await newest.dragTo(target);
        const dialog = page.getByRole('dialog');
        await dialog.getByRole('list', { name: 'Will be overwritten' }).waitFor();
        await snap('3-restore-dialog');
        assert.match(
          (await dialog.textContent()) ?? '',
          new RegExp(`This overwrites the image file ${fixture.target}`),
        );
        await dialog.getByRole('button', { name: `Overwrite ${fixture.target}` }).click();
        await page.getByRole('heading', { level: 2 }).filter({ hasText: 'Restore' }).waitFor();
        const state = await waitForJobEnd(page);
        if (state !== 'Done') {
          const reason = (await firstAlertText(page)) ?? state;
          assert.fail(`the restore ended '${state}': ${reason}`);
        }
        const restored = await readFile(fixture.target);
        assert.equal(restored.length, sourceBytes.length);
        assert.notEqual(
          sha256(restored),
          sha256(firstPointBytes),
          'the newest point was restored, not the first one (made before the change)',
        );
        assert.equal(
          sha256(restored),
          sha256(sourceBytes),
          'the restored image equals the source at the backup',
        );
      },
    );

    await t.test('by keyboard: Restore to… a new image file gives the same bytes', async (st) => {
      if (!backupRan) {
        st.skip('no point from the UI backup to restore');
        return;
      }
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Timeline' }).click();
      const newest = page.getByRole('list', { name: 'Timeline' }).getByRole('button').last();
      await newest.focus();
      await page.keyboard.press('End');
      await page.keyboard.press('Enter');
      const restoreTo = page.getByRole('button', { name: 'Restore to…' });
      await restoreTo.focus();
      await page.keyboard.press('Enter');
      const imagePath = join(fixture.dir, 'by-keyboard.img');
      await page.getByRole('textbox', { name: 'Image file', exact: true }).focus();
      await page.keyboard.type(imagePath);
      await page.keyboard.press('Enter');
      const dialog = page.getByRole('dialog');
      await dialog.getByRole('list', { name: 'Will be overwritten' }).waitFor();
      const confirm = dialog.getByRole('button', { name: `Overwrite ${imagePath}` });
      await confirm.focus();
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { level: 2 }).filter({ hasText: 'by-keyboard.img' }).waitFor();
      assert.equal(await waitForJobEnd(page), 'Done');
      const restored = await readFile(imagePath);
      assert.equal(sha256(restored), sha256(sourceBytes), 'the new image equals the source at the backup');
    });

    await t.test('a restore drill from the timeline passes and is recorded on the point', async (st) => {
      if (!backupRan) {
        st.skip('no point from the UI backup to drill');
        return;
      }
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Timeline' }).click();
      await page.getByRole('list', { name: 'Timeline' }).getByRole('button').last().click();
      const details = page.getByRole('region', { name: 'Selected restore point' });
      await details.getByRole('button', { name: 'Restore drill' }).click();
      const outcome = details.getByRole('region', { name: 'Latest drill' });
      await outcome.locator('.badge.job-succeeded, .badge.job-failed').waitFor({ timeout: 30_000 });
      assert.match(
        (await outcome.textContent()) ?? '',
        /succeeded/,
        `the drill ended: ${await outcome.textContent()}`,
      );
      await details.getByText(/^Passed/).waitFor();
      await snap('4-drill');
    });

    await t.test('verifying every byte from Repository health marks the points verified', async (st) => {
      if (!backupRan) {
        st.skip('the UI backup did not run');
        return;
      }
      await page
        .getByRole('navigation', { name: 'Main' })
        .getByRole('button', { name: 'Repository health' })
        .click();
      await page.getByRole('button', { name: 'Verify every byte' }).click();
      const outcome = page.getByRole('region', { name: 'Latest verify' });
      await outcome.locator('.badge.job-succeeded, .badge.job-failed').waitFor({ timeout: 30_000 });
      assert.match(
        (await outcome.textContent()) ?? '',
        /succeeded/,
        `the verify ended: ${await outcome.textContent()}`,
      );
      const verified = page.locator('.stat').filter({ hasText: 'verified' }).locator('.stat-value');
      await page.waitForFunction((element) => element?.textContent === '2', await verified.elementHandle(), {
        timeout: 10_000,
      });
      await snap('5-health');
    });

    assert.deepEqual(errors, [], 'no uncaught errors in the page');
  } finally {
    await fixture.close();
  }
});
