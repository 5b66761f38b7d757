import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { autostartEntry, electronLoginItem, xdgAutostart } from './login-item.ts';
import { createFakeElectron } from './testing/fake-electron.ts';

test('on Linux, start at login writes and removes an XDG autostart entry that starts hidden', async () => {
  const configHome = await mkdtemp(join(tmpdir(), 'diskline-autostart-'));
  try {
    const item = xdgAutostart(configHome, ['/opt/Diskline/diskline-desktop']);
    assert.equal(item.isEnabled(), false);
    item.setEnabled(true);
    const path = join(configHome, 'autostart', 'diskline.desktop');
    assert.equal(item.isEnabled(), true);
    assert.match(readFileSync(path, 'utf8'), /^Exec=\/opt\/Diskline\/diskline-desktop --hidden$/m);
    item.setEnabled(false);
    assert.equal(existsSync(path), false);
    item.setEnabled(false);
  } finally {
    await rm(configHome, { recursive: true, force: true });
  }
});

test('Exec arguments with spaces and reserved characters are quoted as the Desktop Entry spec asks', () => {
  const entry = autostartEntry(['/home/ann/Apps/Diskline 1.0.AppImage', '/srv/app "dev"', '$HOME']);
  assert.match(
    entry,
    /^Exec="\/home\/ann\/Apps\/Diskline 1\.0\.AppImage" "\/srv\/app \\"dev\\"" "\\\$HOME" --hidden$/m,
  );
  assert.match(entry, /^\[Desktop Entry\]\nType=Application\nName=Diskline\n/);
});

test("elsewhere, Electron's login item is used, with --hidden", () => {
  const fake = createFakeElectron();
  const item = electronLoginItem(fake.electron.app);
  item.setEnabled(true);
  assert.equal(item.isEnabled(), true);
  assert.deepEqual(fake.app.loginSettings, [{ openAtLogin: true, args: ['--hidden'] }]);
});
