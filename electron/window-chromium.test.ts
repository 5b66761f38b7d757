// The shell's window as close to Electron as this machine allows: the built renderer in a real Chromium,
// served by the shell's own app:// handler with its CSP; the real preload code (with a stand-in for
// require('electron') that routes ipcRenderer to the shell's IPC handler); the shell (with the fake
// Electron) connected to the real engine daemon. Checks the renderer runs under the CSP without a violation,
// reaches the engine through the bridge, and that the tray follows a backup started from the page.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { stripTypeScriptTypes } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { appOrigin } from './ipc-policy.ts';
import { type Shell, startShell } from './shell.ts';
import { EngineProcess } from './testing/engine-process.ts';
import { createFakeElectron, type FakeElectron } from './testing/fake-electron.ts';
import { supervisorOfRunningEngine } from './testing/running-engine.ts';
import { waitFor } from './testing/wait-for.ts';

const root = join(import.meta.dirname, '..');
const rendererDir = join(root, 'renderer', 'dist');
const chromiumPath = '/usr/bin/chromium';

function unavailableReason(): string | null {
  if (!existsSync(join(rendererDir, 'index.html')))
    return `the renderer is not built (${rendererDir}): run npm run build`;
  if (!existsSync(chromiumPath)) return `no Chromium at ${chromiumPath} (scripts/setup.sh installs it)`;
  return null;
}

/** The preload as Chromium runs it in Electron's sandbox: a function body given require, module and exports. */
function preloadInitScript(): string {
  const preload = stripTypeScriptTypes(readFileSync(join(import.meta.dirname, 'preload.cts'), 'utf8'));
  return `(() => {
    const ipcListeners = {};
    const electron = {
      contextBridge: { exposeInMainWorld(key, api) { Object.defineProperty(window, key, { value: Object.freeze(api) }); } },
      ipcRenderer: {
        invoke: (channel, payload) => window.__disklineIpcInvoke(channel, payload),
        on(channel, listener) { (ipcListeners[channel] ??= []).push(listener); },
      },
    };
    Object.defineProperty(window, '__disklineIpcDeliver', {
      value: (channel, message) => { for (const listener of ipcListeners[channel] ?? []) listener({}, message); },
    });
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + e.sourceFile + ':' + e.lineNumber));
    const require = (name) => { if (name !== 'electron') throw new Error('a sandboxed preload cannot require ' + name); return electron; };
    const module = { exports: {} };
    ((exports, require, module) => {\n${preload}\n})(module.exports, require, module);
  })();`;
}

let dir: string;
let engine: EngineProcess;
let fake: FakeElectron;
let shell: Shell;
let server: Server;
let browser: Browser;
let page: Page;
let pageOrigin: string;
const calledMethods: string[] = [];
const pageErrors: string[] = [];
const consoleCsp: string[] = [];

before(async () => {
  if (unavailableReason()) return;
  dir = await mkdtemp(join(tmpdir(), 'diskline-window-'));
  engine = await EngineProcess.start(dir, { DISKLINE_PASSWORD: 'window test passphrase' });
  fake = createFakeElectron();
  const started = await startShell(fake.electron, {
    rendererDir,
    preloadPath: join(dir, 'preload.cjs'),
    assetsDir: join(root, 'assets'),
    startHidden: false,
    trayRenderIntervalMs: 20,
    createEngine: (onConnection) =>
      supervisorOfRunningEngine(engine.socketPath, join(dir, 'user.sock'), onConnection),
  });
  assert.ok(started);
  shell = started;
  // Chromium cannot load our custom scheme; a loopback server hands each request to the shell's app:// handler.
  const serveApp = fake.protocolHandlers.get('app')!;
  server = createServer(async (request, response) => {
    const answer = await serveApp(new Request(`${appOrigin}${request.url}`));
    response.writeHead(answer.status, Object.fromEntries(answer.headers));
    response.end(Buffer.from(await answer.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  page = await browser.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) consoleCsp.push(message.text());
  });
  // The IPC the preload's ipcRenderer.invoke does, with the frame as Electron would report it (on app://).
  await page.exposeBinding('__disklineIpcInvoke', async (source, channel: string, payload: unknown) => {
    const frameUrl = source.frame.url().replace(pageOrigin, appOrigin);
    calledMethods.push((payload as { method: string }).method);
    return fake.invoke(
      channel,
      { url: frameUrl, parent: source.frame.parentFrame() ? { url: '', parent: null } : null },
      payload,
    );
  });
  // Events the shell sends to its window go to the page's preload listeners.
  const window = fake.windows[0]!;
  window.webContents.send = (channel: string, ...args: unknown[]) => {
    void page
      .evaluate(
        ([c, m]) =>
          (
            globalThis as unknown as { __disklineIpcDeliver(c: unknown, m: unknown): void }
          ).__disklineIpcDeliver(c, m),
        [channel, args[0]] as const,
      )
      .catch(() => {});
  };
  await page.addInitScript({ content: preloadInitScript() });
  await page.goto(`${pageOrigin}/index.html`);
});

after(async () => {
  await browser?.close().catch(() => {});
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  shell?.engine.stop();
  shell?.tray.dispose();
  await engine?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('the renderer runs under the shell CSP without a violation and uses the preload bridge', async (t) => {
  const unavailable = unavailableReason();
  if (unavailable) return t.skip(unavailable);
  await page.waitForFunction(() => (document.getElementById('root')?.childElementCount ?? 0) > 0);
  await waitFor('the renderer to call the engine', () => calledMethods.includes('engine.status'));
  const policy = await page.evaluate(async () =>
    (await fetch(location.href)).headers.get('content-security-policy'),
  );
  assert.match(policy ?? '', /^default-src 'none'; script-src 'self';/);
  const state = await page.evaluate(() => ({
    bridge: Object.keys((globalThis as unknown as { diskline?: object }).diskline ?? {}).sort(),
    violations: (globalThis as unknown as { __cspViolations: string[] }).__cspViolations,
  }));
  assert.deepEqual(state, { bridge: ['call', 'on'], violations: [] });
  assert.deepEqual(consoleCsp, []);
  assert.deepEqual(pageErrors, []);
});

test('a backup started from the page: the tray goes busy then idle, the page hears the job end', async (t) => {
  const unavailable = unavailableReason();
  if (unavailable) return t.skip(unavailable);
  const repo = join(dir, 'repo');
  const source = join(dir, 'source.img');
  execFileSync('truncate', ['-s', '64M', source]);
  execFileSync('mkfs.ext4', ['-q', '-F', source]);
  type Bridge = {
    call(m: string, p: unknown): Promise<{ id: string }>;
    on(e: string, l: (d: { id: string; state: string }) => void): () => void;
  };
  await page.evaluate(
    ([r]) =>
      (globalThis as unknown as { diskline: Bridge }).diskline.call('repo.init', {
        repo: r,
        encrypted: true,
      }),
    [repo] as const,
  );
  const iconsBefore = shell.tray.shownIcons.length;
  const job = await page.evaluate(
    ([s, r]) => {
      const bridge = (globalThis as unknown as { diskline: Bridge }).diskline;
      const states: string[] = [];
      (globalThis as unknown as { __jobStates: string[] }).__jobStates = states;
      bridge.on('job.updated', (update) => states.push(update.state));
      return bridge.call('backup.start', { source: s, repo: r });
    },
    [source, repo] as const,
  );
  assert.ok(job.id);
  await page.waitForFunction(
    () => (globalThis as unknown as { __jobStates: string[] }).__jobStates.includes('succeeded'),
    undefined,
    { timeout: 60_000 },
  );
  await waitFor('the idle icon', () => fake.trays[0]!.icon.endsWith('tray-idle.png'));
  assert.deepEqual(shell.tray.shownIcons.slice(iconsBefore), ['busy', 'idle']);
  assert.equal(fake.notifications.at(-1)?.title, 'Backup finished');
  assert.deepEqual(pageErrors, []);
});
