// The desktop shell put together: one instance, one locked-down window onto the renderer, the preload's
// single IPC channel to the engine, the tray and the notifications. It takes Electron and the engine as
// arguments (main.ts passes the real ones, the tests a fake Electron and a test engine), and holds no
// state of its own beyond what the tray shows: everything comes from the engine.
import { join } from 'node:path';
import { type EngineClient, type EventName, eventSchemas } from '../protocol/messages.ts';
import { type CallAnswer, callChannel, checkCall, eventChannel, trustedOrigins } from './ipc-policy.ts';
import { electronLoginItem, type LoginItem } from './login-item.ts';
import { Notifier } from './notifications.ts';
import type { ShellElectron, ShellInvokeEvent, ShellWindow } from './shell-electron.ts';
import { TrayPresenter } from './tray.ts';
import { type EngineConnection, type TrayAction, TrayState } from './tray-model.ts';
import {
  contentSecurityPolicy,
  mayNavigate,
  rendererEntryUrl,
  serveRendererFile,
  windowOptions,
  withContentSecurityPolicy,
} from './window-policy.ts';

export type ShellEngine = EngineClient & { start(): Promise<void>; stop(): void };

export type ShellConfig = {
  /** renderer/dist: index.html and its assets. */
  rendererDir: string;
  /** The Vite dev server's URL in development (DISKLINE_RENDERER_URL); the built renderer otherwise. */
  devServerUrl?: string;
  preloadPath: string;
  assetsDir: string;
  /** Started at login: tray only, the window opens from it. */
  startHidden: boolean;
  timeZone?: string;
  now?: () => Date;
  /** Start at login; Electron's login items when absent (main.ts passes the XDG autostart entry on Linux). */
  loginItem?: LoginItem;
  /** Minimum time between tray renders (progress events can come many times a second). */
  trayRenderIntervalMs?: number;
  createEngine(onConnection: (connection: EngineConnection, notice: string | null) => void): ShellEngine;
};

export type Shell = {
  readonly trayState: TrayState;
  readonly tray: TrayPresenter;
  readonly engine: ShellEngine;
  window(): ShellWindow | null;
  showWindow(): void;
  dispatch(action: TrayAction): Promise<void>;
};

/** The URL scheme is registered before the app is ready, as Electron requires. */
export function registerAppScheme(electron: Pick<ShellElectron, 'protocol'>): void {
  electron.protocol.registerSchemesAsPrivileged([
    {
      scheme: 'app',
      privileges: { standard: true, secure: true, supportFetchAPI: true, corsEnabled: true, codeCache: true },
    },
  ]);
}

export async function startShell(electron: ShellElectron, config: ShellConfig): Promise<Shell | null> {
  const { app } = electron;
  if (!app.requestSingleInstanceLock()) {
    // Another Diskline runs; it shows its window (second-instance) and this one leaves.
    app.quit();
    return null;
  }
  registerAppScheme(electron);
  const origins = trustedOrigins(config.devServerUrl);
  const policy = contentSecurityPolicy(config.devServerUrl);
  const now = config.now ?? (() => new Date());
  let quitting = false;
  let mainWindow: ShellWindow | null = null;

  // Every web contents, present and future, keeps to our pages and opens no windows.
  app.on('web-contents-created', (_event, contents) => {
    contents.on('will-navigate', (event, url) => {
      if (!mayNavigate(url, origins)) event.preventDefault();
    });
    contents.on('will-attach-webview', (event) => event.preventDefault());
    contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  });
  // Closing the window keeps the tray; the app ends from the tray's Quit.
  app.on('window-all-closed', () => {});
  app.on('before-quit', () => {
    quitting = true;
  });

  await app.whenReady();
  const { defaultSession } = electron.session;
  defaultSession.setPermissionRequestHandler((_contents, _permission, callback) => callback(false));
  defaultSession.webRequest.onHeadersReceived((details, callback) =>
    callback({ responseHeaders: withContentSecurityPolicy(details.responseHeaders, policy) }),
  );
  electron.protocol.handle('app', (request) => serveRendererFile(config.rendererDir, request.url, policy));

  const trayState = new TrayState();
  const notifier = new Notifier();
  const loginItem = config.loginItem ?? electronLoginItem(app);
  let startAtLogin = loginItem.isEnabled();
  let lastNotice: string | null = null;

  const notify = (title: string, body: string, urgent: boolean) => {
    if (!electron.Notification.isSupported()) return;
    new electron.Notification({ title, body, urgency: urgent ? 'critical' : 'normal' }).show();
  };

  const showWindow = () => {
    trayState.acknowledge();
    tray.update();
    if (mainWindow && !mainWindow.isDestroyed()) {
      if (mainWindow.isMinimized()) mainWindow.restore();
      mainWindow.show();
      mainWindow.focus();
      return;
    }
    const window = new electron.BrowserWindow(
      windowOptions(config.preloadPath, join(config.assetsDir, 'icons', '512x512.png')),
    );
    mainWindow = window;
    window.once('ready-to-show', () => window.show());
    window.on('close', (event) => {
      if (!quitting) {
        event.preventDefault();
        window.hide();
      }
    });
    window.on('closed', () => {
      if (mainWindow === window) mainWindow = null;
    });
    void window.loadURL(config.devServerUrl ?? rendererEntryUrl);
  };

  const refreshFromEngine = async () => {
    try {
      const [status, plans, jobs] = await Promise.all([
        engine.call('engine.status', {}),
        engine.call('plans.list', {}),
        engine.call('jobs.list', {}),
      ]);
      trayState.setEngineStatus(status);
      trayState.setPlans(plans);
      const shownActive = new Set(trayState.activeJobs.map((job) => job.id));
      for (const job of jobs) {
        // The list keeps ended jobs; only those the tray showed as active are news (an old failure is not).
        const active = job.state === 'queued' || job.state === 'running';
        if (active || shownActive.has(job.id)) trayState.jobUpdated(job);
        const notification = notifier.jobUpdated(job);
        if (notification) notify(notification.title, notification.body, notification.urgent);
      }
    } catch (error) {
      console.error(`diskline: could not read the engine's status: ${(error as Error).message}`);
    }
    tray.update();
  };

  const engine = config.createEngine((connection, notice) => {
    trayState.setConnection(connection);
    if (notice && notice !== lastNotice) notify('Diskline', notice, false);
    lastNotice = notice;
    if (connection.kind === 'connected') void refreshFromEngine();
    tray.update();
  });

  const dispatch = async (action: TrayAction): Promise<void> => {
    try {
      switch (action.kind) {
        case 'backupNow':
          trayState.jobUpdated(await engine.call('plans.runNow', { id: action.planId }));
          break;
        case 'setSchedulesPaused': {
          const { paused } = await engine.call('schedules.setPaused', { paused: action.paused });
          trayState.setEngineStatus({ schedulesPaused: paused, nextRun: trayState.nextRun });
          break;
        }
        case 'openWindow':
          showWindow();
          break;
        case 'setStartAtLogin':
          loginItem.setEnabled(action.enabled);
          startAtLogin = loginItem.isEnabled();
          break;
        case 'quit':
          quitting = true;
          engine.stop();
          tray.dispose();
          app.quit();
          return;
      }
    } catch (error) {
      notify('Diskline could not do that', (error as Error).message, true);
    }
    tray.update();
  };

  const tray = new TrayPresenter(
    electron,
    config.assetsDir,
    () => trayState.view({ now: now(), startAtLogin, timeZone: config.timeZone }),
    (action) => void dispatch(action),
    config.trayRenderIntervalMs,
  );
  tray.tray.on('click', showWindow);

  electron.ipcMain.handle(
    callChannel,
    async (event: ShellInvokeEvent, payload: unknown): Promise<CallAnswer> => {
      const frame = event.senderFrame;
      const check = checkCall(
        callChannel,
        frame && { url: frame.url, isMainFrame: frame.parent === null },
        payload,
        origins,
      );
      if (!check.ok) {
        return {
          ok: false,
          error: { code: 'forbidden', message: `Diskline refused the call: ${check.reason}` },
        };
      }
      try {
        return { ok: true, result: await engine.call(check.method, check.params as never) };
      } catch (error) {
        const { code, message } = error as { code?: unknown; message?: unknown };
        return {
          ok: false,
          error: { code: typeof code === 'string' ? code : 'failed', message: String(message ?? error) },
        };
      }
    },
  );

  // The tray's own view of the engine; every event also goes to the window as is.
  engine.on('job.updated', (job) => {
    trayState.jobUpdated(job);
    const notification = notifier.jobUpdated(job);
    if (notification) notify(notification.title, notification.body, notification.urgent);
    tray.update();
  });
  engine.on('plan.ran', (ran) => {
    trayState.planRan(ran);
    const notification = notifier.planRan(ran);
    if (notification) notify(notification.title, notification.body, notification.urgent);
    void refreshFromEngine();
  });
  engine.on('plans.changed', () => void refreshFromEngine());
  for (const event of Object.keys(eventSchemas) as EventName[]) {
    engine.on(event, (data) => {
      if (mainWindow && !mainWindow.isDestroyed()) mainWindow.webContents.send(eventChannel, { event, data });
    });
  }

  app.on('second-instance', showWindow);
  // "today" becomes "tomorrow" at midnight without any event; a minute's staleness is fine.
  setInterval(() => tray.update(), 60_000).unref();

  if (!config.startHidden) showWindow();
  void engine.start();
  return { trayState, tray, engine, window: () => mainWindow, showWindow, dispatch };
}
