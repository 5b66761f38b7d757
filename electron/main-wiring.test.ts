// The built entry point (electron/dist/electron/main.js) run with the fake Electron in place of the real
// module: checks the wiring only main.ts has — the paths of the preload, the renderer, the icons and the
// engine socket of this install — against files that exist, and that the shell reaches the engine.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { registerHooks } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { Shell } from './shell.ts';
import { createFakeElectron } from './testing/fake-electron.ts';
import { makePlan } from './testing/fixtures.ts';
import { TestEngine } from './testing/test-engine.ts';
import { waitFor } from './testing/wait-for.ts';

const root = join(import.meta.dirname, '..');
const builtMain = join(root, 'electron', 'dist', 'electron', 'main.js');

test('the built main process finds its preload, renderer, icons and engine', async (t) => {
  if (!existsSync(builtMain)) return t.skip(`${builtMain} is not built: run npm run build`);
  if (!existsSync(join(root, 'renderer', 'dist', 'index.html')))
    return t.skip('the renderer is not built: run npm run build');
  const dir = await mkdtemp(join(tmpdir(), 'diskline-main-'));
  const engine = await TestEngine.listen(join(dir, 'engine.sock'));
  engine.handle('plans.list', () => [makePlan()]);
  engine.handle('jobs.list', () => []);
  const fake = createFakeElectron();
  fake.app.paths = { home: join(dir, 'home'), userData: join(dir, 'user-data') };
  (globalThis as { fakeElectronForMain?: unknown }).fakeElectronForMain = fake.electron;
  // main.ts imports 'electron' as a namespace; here that namespace is the fake's members.
  const members = Object.keys(fake.electron);
  const fakeModule = `data:text/javascript,const e = globalThis.fakeElectronForMain;${members
    .map((name) => `export const ${name} = e.${name};`)
    .join('')}`;
  const hooks = registerHooks({
    resolve(specifier, context, next) {
      if (specifier === 'electron') return { url: fakeModule, format: 'module', shortCircuit: true };
      return next(specifier, context);
    },
  });
  const previousSocket = process.env.DISKLINE_SOCKET;
  process.env.DISKLINE_SOCKET = engine.socketPath;
  let shell: Shell | undefined;
  try {
    await import(pathToFileURL(builtMain).href);
    await waitFor(
      'the shell',
      () => (shell = (globalThis as { disklineShell?: Shell }).disklineShell) !== undefined,
    );
    const window = fake.windows[0]!;
    const preload = window.options.webPreferences?.preload;
    assert.equal(preload, join(root, 'electron', 'dist', 'electron', 'preload.cjs'));
    assert.ok(existsSync(preload!), `the preload exists at ${preload}`);
    assert.ok(existsSync(String(window.options.icon)), `the window icon exists at ${window.options.icon}`);
    assert.deepEqual(window.loadedUrls, ['app://diskline/index.html']);
    const index = await fake.protocolHandlers.get('app')!(new Request('app://diskline/index.html'));
    assert.equal(index.status, 200);
    assert.match(await index.text(), /<div id="root">/);
    const tray = fake.trays[0]!;
    assert.ok(existsSync(tray.icon), `the tray icon exists at ${tray.icon}`);
    assert.ok(existsSync(tray.icon.replace('.png', '@2x.png')));
    await waitFor('the engine connection', () => tray.labels().includes('Pause scheduled backups'));
    assert.ok(engine.requests.some((r) => r.method === 'engine.status'));
    if (process.platform === 'linux' && !process.env.XDG_CONFIG_HOME) {
      // Start at login, on Linux, is an XDG autostart entry under the user's home.
      tray.click('Start at login');
      const entry = readFileSync(join(dir, 'home', '.config', 'autostart', 'diskline.desktop'), 'utf8');
      assert.match(entry, /^Exec=.* \/nonexistent\/app --hidden$/m);
    }
  } finally {
    shell?.engine.stop();
    shell?.tray.dispose();
    hooks.deregister();
    if (previousSocket === undefined) delete process.env.DISKLINE_SOCKET;
    else process.env.DISKLINE_SOCKET = previousSocket;
    await engine.close();
    await rm(dir, { recursive: true, force: true });
  }
});
