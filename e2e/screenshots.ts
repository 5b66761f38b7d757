// Takes screenshots of every view against the in-page demo engine, light and dark, to look at the design:
// `npx node e2e/screenshots.ts [outDir]` after `npm run build`. Not a test.
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { installDemoBridge } from './demo-bridge.ts';
import { serveRendererDist } from './static-server.ts';

const outDir = process.argv[2] ?? (await mkdtemp(join(tmpdir(), 'diskline-shots-')));
await mkdir(outDir, { recursive: true });
const { url, server } = await serveRendererDist();
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-gpu', '--no-first-run'],
});
try {
  for (const scheme of ['light', 'dark'] as const) {
    const page = await browser.newPage({ viewport: { width: 1360, height: 860 }, colorScheme: scheme });
    page.on('pageerror', (error) => console.error('page error:', error.message));
    await page.addInitScript(installDemoBridge);
    await page.goto(`${url}#repo=/srv/backups/laptop`);
    const views = [
      'Timeline',
      'Live job',
      'Drives',
      'Backup plans',
      'Schedules',
      'Repository health',
      'Settings',
    ];
    for (const view of views) {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: view }).click();
      await page.waitForTimeout(view === 'Live job' ? 1500 : 300);
      if (view === 'Timeline')
        await page.getByRole('list', { name: 'Timeline' }).getByRole('button').first().click();
      const file = join(outDir, `${scheme}-${view.toLowerCase().replace(/ /g, '-')}.png`);
      await page.screenshot({ path: file });
      console.log(file);
    }
    if (scheme === 'light') {
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Timeline' }).click();
      await page.getByRole('list', { name: 'Timeline' }).getByRole('button').last().click();
      await page.getByRole('button', { name: 'Restore to…' }).click();
      await page.screenshot({ path: join(outDir, 'light-restore-menu.png') });
      await page.keyboard.press('Escape');
      await page
        .getByRole('navigation', { name: 'Main' })
        .getByRole('button', { name: 'Backup plans' })
        .click();
      await page.getByRole('button', { name: 'New plan' }).click();
      await page.screenshot({ path: join(outDir, 'light-plan-editor.png') });
      await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Timeline' }).click();
      await page.getByRole('list', { name: 'Timeline' }).getByRole('button').last().click();
      await page.getByRole('button', { name: 'Restore to…' }).click();
      await page.getByRole('menuitem').nth(1).click();
      await page.waitForTimeout(200);
      await page.screenshot({ path: join(outDir, 'light-restore-dialog.png') });
      console.log(join(outDir, 'light-restore-dialog.png'));
    }
    await page.close();
  }
} finally {
  await browser.close();
  server.close();
}
