// The desktop app end to end: launches the real Electron binary on the built shell (electron/dist) and
// renderer (renderer/dist) with a real engine daemon, sees the window and its locked-down bridge, and
// watches the tray go busy and back to idle while a backup started from the window runs. Runs wherever an
// Electron binary is installed; skips, saying why, where it is not (its download comes from outside the
// npm registry, which some machines cannot reach).
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { _electron, type ElectronApplication } from 'playwright-core';
import { EngineLink } from '../electron/engine-link.ts';
import { EngineProcess } from '../electron/testing/engine-process.ts';

const root = join(import.meta.dirname, '..');
const mainScript = join(root, 'electron', 'dist', 'electron', 'main.js');
const rendererIndex = join(root, 'renderer', 'dist', 'index.html');

/** The Electron executable, or why there is none. */
function electronBinary(): { path: string } | { missing: string } {
  let path: string;
  try {
    // The electron package's main exports the binary's path, and throws when its download never happened.
    path = createRequire(import.meta.url)('electron') as string;
  } catch (error) {
    return {
      missing:
        `the Electron binary is not installed (${(error as Error).message.split('\n')[0]}); its download ` +
        'comes from outside the npm registry: install electron without ELECTRON_SKIP_BINARY_DOWNLOAD to run this test',
    };
  }
  if (!existsSync(path)) return { missing: `the Electron binary is missing at ${path}` };
  return { path };
}

function unavailableReason(): string | null {
  const binary = electronBinary();
  if ('missing' in binary) return binary.missing;
  if (!existsSync(mainScript)) return `the shell is not built (${mainScript} is missing): run npm run build`;
  if (!existsSync(rendererIndex))
    return `the renderer is not built (${rendererIndex} is missing): run npm run build`;
  return null;
}

/** A display for Electron: the session's own, or a private Xvfb, used once it says it is ready. */
async function startDisplay(): Promise<{ display: string; stop(): void }> {
  if (process.platform !== 'linux' || process.env.DISPLAY) {
    return { display: process.env.DISPLAY ?? '', stop() {} };
  }
  // -displayfd: Xvfb picks a free display and writes its number to fd 3 once it accepts connections.
  const xvfb: ChildProcess = spawn(
    'Xvfb',
    ['-displayfd', '3', '-screen', '0', '1360x900x24', '-nolisten', 'tcp'],
    {
      stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  xvfb.stderr!.on('data', (chunk) => (stderr = (stderr + chunk).slice(-2000)));
  const number = await new Promise<string>((resolve, reject) => {
    let written = '';
    const ready = xvfb.stdio[3] as NodeJS.ReadableStream;
    ready.setEncoding('utf8');
    ready.on('data', (chunk: string) => {
      written += chunk;
      if (written.includes('\n')) resolve(written.trim());
    });
    xvfb.once('error', reject);
    xvfb.once('exit', (code) => reject(new Error(`Xvfb exited (${code}) before it was ready: ${stderr}`)));
  });
  return { display: `:${number}`, stop: () => xvfb.kill() };
}

type ShellProbe = { icon: string; shownIcons: string[]; tooltip: string; windowVisible: boolean };

/** Reads the tray's state in the main process, where main.ts keeps the shell on the global. */
function probeShell(app: ElectronApplication): Promise<ShellProbe> {
  return app.evaluate(() => {
    type Shell = {
      trayState: { icon(): string; view(o: { now: Date; startAtLogin: boolean }): { tooltip: string } };
      tray: { shownIcons: string[] };
      window(): { isVisible(): boolean } | null;
    };
    const shell = (globalThis as unknown as { disklineShell: Shell }).disklineShell;
    return {
      icon: shell.trayState.icon(),
      shownIcons: [...shell.tray.shownIcons],
      tooltip: shell.trayState.view({ now: new Date(), startAtLogin: false }).tooltip,
      windowVisible: shell.window()?.isVisible() ?? false,
    };
  });
}

async function until<T>(what: string, read: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  let value = await read();
  while (!ok(value)) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 50));
    value = await read();
  }
  return value;
}

test('the app opens its window, bridges to the engine, and the tray follows a backup', {
  timeout: 120_000,
}, async (t) => {
  const unavailable = unavailableReason();
  if (unavailable) {
    t.skip(unavailable);
    return;
  }
  const binary = electronBinary() as { path: string };
  const dir = await mkdtemp(join(tmpdir(), 'diskline-electron-e2e-'));
  const engine = await EngineProcess.start(dir, { DISKLINE_PASSWORD: 'e2e passphrase' });
  const display = await startDisplay();
  let app: ElectronApplication | null = null;
  try {
    const repo = join(dir, 'repo');
    const source = join(dir, 'source.img');
    execFileSync('truncate', ['-s', '128M', source]);
    execFileSync('mkfs.ext4', ['-q', '-F', source]);
    const link = await EngineLink.connect(engine.socketPath, () => {});
    await link.call('repo.init', { repo, encrypted: true });
    link.close();

    app = await _electron.launch({
      executablePath: binary.path,
      // Chromium refuses to run as root with its OS sandbox; the renderer's own sandbox (webPreferences) stays.
      args: [...(process.getuid?.() === 0 ? ['--no-sandbox'] : []), root],
      env: {
        ...process.env,
        DISKLINE_SOCKET: engine.socketPath,
        ...(display.display ? { DISPLAY: display.display } : {}),
      } as Record<string, string>,
    });
    const page = await app.firstWindow();

    await t.test(
      'the window shows the renderer on the app origin with the bridge and without Node',
      async () => {
        await page.waitForLoadState('domcontentloaded');
        assert.equal(page.url(), 'app://diskline/index.html');
        assert.equal(await page.title(), 'Diskline');
        const globals = await page.evaluate(() => {
          const w = globalThis as unknown as Record<string, unknown> & { diskline?: Record<string, unknown> };
          return {
            bridge: Object.keys(w.diskline ?? {}).sort(),
            require: typeof w.require,
            process: typeof w.process,
            ipcRenderer: typeof w.ipcRenderer,
          };
        });
        assert.deepEqual(globals, {
          bridge: ['call', 'on'],
          require: 'undefined',
          process: 'undefined',
          ipcRenderer: 'undefined',
        });
      },
    );

    await t.test(
      'the bridge refuses methods outside the protocol and reaches the engine for the rest',
      async () => {
        const status = await page.evaluate(() =>
          (
            globalThis as unknown as {
              diskline: { call(m: string, p: unknown): Promise<{ version: string }> };
            }
          ).diskline.call('engine.status', {}),
        );
        assert.match(status.version, /^\d+\.\d+\.\d+/);
        const refused = await page.evaluate(() =>
          (globalThis as unknown as { diskline: { call(m: string, p: unknown): Promise<unknown> } }).diskline
            .call('engine.shutdown', {})
            .then(
              () => 'called',
              (error: Error) => error.message,
            ),
        );
        assert.match(refused, /no engine method 'engine\.shutdown'/);
      },
    );

    await t.test(
      'the tray is idle, goes busy during a backup started from the window, then idle again',
      async () => {
        await until(
          'the engine connection',
          () => probeShell(app!),
          (p) => p.icon === 'idle' && !/Connecting/.test(p.tooltip),
        );
        const before = (await probeShell(app!)).shownIcons.length;
        const job = await page.evaluate(
          ([sourcePath, repoPath]) =>
            (
              globalThis as unknown as { diskline: { call(m: string, p: unknown): Promise<{ id: string }> } }
            ).diskline.call('backup.start', { source: sourcePath, repo: repoPath }),
          [source, repo] as const,
        );
        assert.ok(job.id);
        const seen = await until(
          'busy, then idle',
          () => probeShell(app!),
          (p) => p.shownIcons.slice(before).join(',') === 'busy,idle',
          60_000,
        );
        assert.equal(seen.icon, 'idle');
      },
    );

    await t.test('closing the window keeps the app in the tray', async () => {
      await app!.evaluate(({ BrowserWindow }) => BrowserWindow.getAllWindows()[0]!.close());
      const probe = await until(
        'the hidden window',
        () => probeShell(app!),
        (p) => !p.windowVisible,
      );
      assert.equal(probe.windowVisible, false);
      assert.equal(await app!.evaluate(({ BrowserWindow }) => BrowserWindow.getAllWindows().length), 1);
    });
  } finally {
    await app?.evaluate(({ app: electronApp }) => electronApp.exit(0)).catch(() => {});
    await app?.close().catch(() => {});
    display.stop();
    await engine.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
