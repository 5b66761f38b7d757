// Electron's entry point (package.json "main" → electron/dist/electron/main.js): wires the real Electron
// module, the engine supervisor and the paths of this install into the shell. Everything with a decision
// in it lives in the modules it imports, which the tests exercise with a fake Electron.
import type { ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as electron from 'electron';
import { systemClock } from '../protocol/clock.ts';
import { elevatedLaunch } from './elevation.ts';
import { startElevatedEngine, startUserEngine } from './engine-launcher.ts';
import { EngineLink } from './engine-link.ts';
import { EngineSupervisor } from './engine-supervisor.ts';
import { startHiddenFlag, xdgAutostart } from './login-item.ts';
import { type ShellConfig, startShell } from './shell.ts';

/** The default socket of the engine service; DISKLINE_SOCKET overrides it, as for every client. */
const serviceSocket = '/run/diskline/engine.sock';

// Built layout: <root>/electron/dist/electron/main.js, beside preload.cjs; the renderer, the assets and the
// engine launcher sit at <root> (unpacked in packaged builds: the engine runs as its own process).
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const enginePath = join(root, 'bin', process.platform === 'win32' ? 'diskline.cmd' : 'diskline');
const systemSocket = process.env.DISKLINE_SOCKET ?? serviceSocket;
const userSocket = join(
  process.env.XDG_RUNTIME_DIR ?? tmpdir(),
  `diskline-${process.getuid?.() ?? 'user'}.sock`,
);

let userEngine: ChildProcess | null = null;

const config: ShellConfig = {
  rendererDir: join(root, 'renderer', 'dist'),
  devServerUrl: process.env.DISKLINE_RENDERER_URL || undefined,
  preloadPath: join(here, 'preload.cjs'),
  assetsDir: join(root, 'assets'),
  startHidden: process.argv.includes(startHiddenFlag),
  // Electron has no login items on Linux: an XDG autostart entry that runs this very app (the AppImage, the
  // installed binary, or in development Electron with this app's folder).
  loginItem:
    process.platform === 'linux'
      ? xdgAutostart(
          process.env.XDG_CONFIG_HOME || join(electron.app.getPath('home'), '.config'),
          process.env.APPIMAGE
            ? [process.env.APPIMAGE]
            : electron.app.isPackaged
              ? [process.execPath]
              : [process.execPath, electron.app.getAppPath()],
        )
      : undefined,
  createEngine: (onConnection) =>
    new EngineSupervisor({
      systemSocket,
      userSocket,
      connect: (path, onEvent) => EngineLink.connect(path, onEvent),
      startElevated: () =>
        startElevatedEngine(elevatedLaunch(process.platform, enginePath), async () => {
          try {
            (await EngineLink.connect(systemSocket, () => {}, 1000)).close();
            return true;
          } catch {
            return false;
          }
        }),
      startUnprivileged: async (socketPath) => {
        userEngine = await startUserEngine(
          enginePath,
          socketPath,
          join(electron.app.getPath('userData'), 'engine-state'),
        );
        // Give it a moment to listen before the supervisor's first connect.
        for (let i = 0; i < 40; i++) {
          try {
            (await EngineLink.connect(socketPath, () => {}, 500)).close();
            return;
          } catch {
            await new Promise((r) => setTimeout(r, 100));
          }
        }
      },
      clock: systemClock,
      onConnection,
    }),
};

electron.app.on('will-quit', () => userEngine?.kill());
// Kept on the main process's global for diagnostics and the end-to-end test (which reads the tray's
// state through Playwright); renderers cannot reach it.
// No top-level await: Electron must see the app scheme registered before 'ready', and the module finish.
void startShell(electron, config).then((shell) => {
  (globalThis as { disklineShell?: unknown }).disklineShell = shell;
});
