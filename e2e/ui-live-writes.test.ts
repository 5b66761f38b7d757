// The Live view while the disk is really in use: the source image is protected through the tap from the Drives
// view, its loop device is mounted and files on it are rewritten in place while a backup started from the UI
// runs, so old blocks go to the intermediate container — the container meter and the block map must show it.
// Needs root, FUSE and loop devices (the tap); skips with the reason otherwise.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { tapUnavailableReason } from '../engine/tap/system-state.ts';
import { runTool } from '../engine/testing/tools.ts';
import { recordValues, waitForJobEnd } from './job-view.ts';
import { callEngine, e2eUnavailableReason, makeFixture } from './ui-engine.ts';

/** Rewrites the files under `dir` in place, over and over, each write synced, until killed. */
function startRewriting(dir: string): ChildProcess {
  const script = `while true; do for f in ${dir}/docs/*.bin; do dd if=/dev/urandom of="$f" bs=64K count=4 conv=notrunc,fsync status=none 2>/dev/null; done; done`;
  return spawn('sh', ['-c', script], { stdio: 'ignore' });
}

test('the container meter and block map follow writes racing a backup', { timeout: 180_000 }, async (t) => {
  const unavailable = e2eUnavailableReason() ?? tapUnavailableReason();
  if (unavailable) {
    t.skip(unavailable);
    return;
  }
  const fixture = await makeFixture(48, 8);
  const mountDir = join(fixture.dir, 'mnt');
  let url: string | null = null;
  let mounted = false;
  let writer: ChildProcess | null = null;
  try {
    await fixture.run(['init', '--repo', fixture.repo]);
    url = await fixture.startServe();
    const page = await fixture.openPage(url);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Drives' }).click();
    const source = page
      .getByRole('list', { name: 'Drives' })
      .getByRole('listitem')
      .filter({ hasText: fixture.source });
    await source.getByRole('button', { name: 'Protect while in use' }).click();
    const notes = source.getByRole('list', { name: `Notes on protecting ${fixture.source}` });
    const text = (await notes.textContent({ timeout: 20_000 })) ?? '';
    const loopDevice = /Mount (\/dev\/loop\d+)/.exec(text)?.[1];
    assert.ok(loopDevice, `the notes name the loop device to mount: ${text}`);
    await source.getByText(`Protected as ${loopDevice}`).waitFor();

    await mkdir(mountDir);
    await runTool('mount', ['-t', 'ext4', loopDevice, mountDir]);
    mounted = true;
    writer = startRewriting(mountDir);

    await source.getByRole('button', { name: 'Back up now' }).click();
    const meter = page.getByRole('meter', { name: 'Intermediate container' });
    const legend = page.getByRole('list', { name: 'Block map legend' });
    await meter.waitFor();
    const held = await recordValues(meter, 'aria-valuenow');
    const legendTexts = await recordValues(legend, null);
    const state = await waitForJobEnd(page);
    const largestHeld = Math.max(...(await held.values()).map(Number));
    const preservedSeen = (await legendTexts.values()).some((text) => /In container [1-9]/.test(text));
    writer.kill('SIGKILL');
    writer = null;
    const reason =
      state === 'Done'
        ? ''
        : await page
            .getByRole('alert')
            .first()
            .textContent()
            .catch(() => state);
    assert.equal(state, 'Done', `the backup ended '${state}': ${reason}`);
    t.diagnostic(
      `the container held up to ${largestHeld} bytes; cells in the container seen: ${preservedSeen}`,
    );
    assert.ok(
      Number(await meter.getAttribute('aria-valuemax')) > 0,
      'the meter shows the container capacity',
    );
    assert.ok(
      largestHeld > 0 || preservedSeen,
      'the container held old blocks at some point while the files were rewritten (meter or block map)',
    );
  } finally {
    if (writer) writer.kill('SIGKILL');
    if (mounted) await runTool('umount', [mountDir]).catch(() => runTool('umount', ['-l', mountDir]));
    if (url) await callEngine(url, 'volumes.detach', { source: fixture.source }).catch(() => {});
    await fixture.close();
  }
});
