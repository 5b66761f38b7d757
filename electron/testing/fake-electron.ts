// A stand-in for the `electron` module, implementing the slice in shell-electron.ts: it records what the
// shell asks of Electron (windows and their options, tray images, tooltips and menus, IPC handlers,
// notifications, login items) and lets a test play the user (click a menu item, close the window) and the
// renderer (invoke a channel from a given frame).
import { EventEmitter } from 'node:events';
import type {
  BrowserWindowConstructorOptions,
  CustomScheme,
  Menu,
  MenuItemConstructorOptions,
  NativeImage,
  NotificationConstructorOptions,
  Settings,
} from 'electron';
import type {
  HeadersDetails,
  ShellElectron,
  ShellEvent,
  ShellInvokeEvent,
  ShellWebContents,
  ShellWebFrame,
  ShellWindow,
} from '../shell-electron.ts';

export type FakeImage = NativeImage & { readonly path: string };
export type FakeMenu = Menu & { readonly template: MenuItemConstructorOptions[] };

function cancellable(): ShellEvent & { prevented: boolean } {
  const event = {
    prevented: false,
    preventDefault() {
      event.prevented = true;
    },
  };
  return event;
}

let nextContentsId = 1;

export class FakeWebContents extends EventEmitter implements ShellWebContents {
  readonly id = nextContentsId++;
  readonly sent: { channel: string; args: unknown[] }[] = [];
  windowOpenHandler: ((details: { url: string }) => { action: 'deny' }) | null = null;
  send(channel: string, ...args: unknown[]): void {
    this.sent.push({ channel, args });
  }
  setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' }): void {
    this.windowOpenHandler = handler;
  }
  /** Plays a navigation; true when the shell let it happen. */
  navigate(url: string): boolean {
    const event = cancellable();
    this.emit('will-navigate', event, url);
    return !event.prevented;
  }
  attachWebview(): boolean {
    const event = cancellable();
    this.emit('will-attach-webview', event);
    return !event.prevented;
  }
}

export class FakeApp extends EventEmitter {
  lockAvailable = true;
  quitCalls = 0;
  login = { openAtLogin: false };
  loginSettings: Settings[] = [];
  isPackaged = false;
  /** What getPath answers (main.ts asks for 'home' and 'userData'); tests point these at temp dirs. */
  paths: Record<string, string> = { home: '/nonexistent/home', userData: '/nonexistent/user-data' };
  readonly #electron: FakeElectronState;
  constructor(electron: FakeElectronState) {
    super();
    this.#electron = electron;
  }
  getPath(name: string): string {
    const path = this.paths[name];
    if (!path) throw new Error(`the fake app has no path for '${name}'`);
    return path;
  }
  getAppPath(): string {
    return '/nonexistent/app';
  }
  requestSingleInstanceLock(): boolean {
    return this.lockAvailable;
  }
  whenReady(): Promise<void> {
    this.#electron.ready = true;
    return Promise.resolve();
  }
  quit(): void {
    this.quitCalls++;
    this.emit('before-quit');
  }
  getLoginItemSettings(): { openAtLogin: boolean } {
    return this.login;
  }
  setLoginItemSettings(settings: Settings): void {
    this.loginSettings.push(settings);
    this.login = { openAtLogin: settings.openAtLogin ?? false };
  }
}

type FakeElectronState = { ready: boolean };

export function createFakeElectron() {
  const state: FakeElectronState = { ready: false };
  const app = new FakeApp(state);
  const windows: FakeWindow[] = [];
  const trays: FakeTray[] = [];
  const notifications: NotificationConstructorOptions[] = [];
  const ipcHandlers = new Map<string, (event: ShellInvokeEvent, ...args: unknown[]) => unknown>();
  const privilegedSchemes: { schemes: CustomScheme[]; beforeReady: boolean }[] = [];
  const protocolHandlers = new Map<string, (request: Request) => Response | Promise<Response>>();
  const permissionHandlers: ((
    contents: unknown,
    permission: string,
    cb: (granted: boolean) => void,
  ) => void)[] = [];
  const headerListeners: ((
    details: HeadersDetails,
    cb: (response: { responseHeaders?: Record<string, string[] | string> }) => void,
  ) => void)[] = [];

  class FakeWindow extends EventEmitter implements ShellWindow {
    readonly options: BrowserWindowConstructorOptions;
    readonly webContents = new FakeWebContents();
    loadedUrls: string[] = [];
    visible = false;
    destroyed = false;
    constructor(options: BrowserWindowConstructorOptions) {
      super();
      this.options = options;
      windows.push(this);
      app.emit('web-contents-created', {}, this.webContents);
    }
    loadURL(url: string): Promise<void> {
      this.loadedUrls.push(url);
      queueMicrotask(() => this.emit('ready-to-show'));
      return Promise.resolve();
    }
    show(): void {
      this.visible = true;
    }
    focus(): void {}
    hide(): void {
      this.visible = false;
    }
    restore(): void {}
    isMinimized(): boolean {
      return false;
    }
    isDestroyed(): boolean {
      return this.destroyed;
    }
    /** Plays the user closing the window; true when it really closed. */
    userClose(): boolean {
      const event = cancellable();
      this.emit('close', event);
      if (event.prevented) return false;
      this.destroyed = true;
      this.visible = false;
      this.emit('closed');
      return true;
    }
  }

  class FakeTray extends EventEmitter {
    images: string[] = [];
    toolTip = '';
    menu: FakeMenu | null = null;
    constructor(image: NativeImage) {
      super();
      this.images.push((image as FakeImage).path);
      trays.push(this);
    }
    setImage(image: NativeImage): void {
      this.images.push((image as FakeImage).path);
    }
    setToolTip(toolTip: string): void {
      this.toolTip = toolTip;
    }
    setContextMenu(menu: Menu | null): void {
      this.menu = menu as FakeMenu | null;
    }
    get icon(): string {
      return this.images.at(-1)!;
    }
    /** Labels of the current menu, '---' for separators. */
    labels(): string[] {
      return (this.menu?.template ?? []).map((i) => (i.type === 'separator' ? '---' : String(i.label)));
    }
    /** Plays a click on the menu item with this label. */
    click(label: string): void {
      const item = this.menu?.template.find((i) => i.label === label);
      if (!item?.click)
        throw new Error(`no clickable "${label}" in the tray menu: ${this.labels().join(' | ')}`);
      if (item.enabled === false) throw new Error(`"${label}" is disabled`);
      (item.click as () => void)();
    }
  }

  class FakeNotification {
    readonly options: NotificationConstructorOptions;
    constructor(options: NotificationConstructorOptions) {
      this.options = options;
    }
    static isSupported(): boolean {
      return true;
    }
    show(): void {
      notifications.push(this.options);
    }
  }

  const electron: ShellElectron = {
    app,
    BrowserWindow: FakeWindow,
    Tray: FakeTray,
    Menu: { buildFromTemplate: (template) => ({ template }) as unknown as FakeMenu },
    Notification: FakeNotification,
    nativeImage: { createFromPath: (path) => ({ path }) as unknown as FakeImage },
    ipcMain: {
      handle(channel, listener) {
        if (ipcHandlers.has(channel)) throw new Error(`a second handler for ${channel}`);
        ipcHandlers.set(channel, listener);
      },
    },
    protocol: {
      registerSchemesAsPrivileged(schemes) {
        privilegedSchemes.push({ schemes, beforeReady: !state.ready });
      },
      handle(scheme, handler) {
        protocolHandlers.set(scheme, handler);
      },
    },
    session: {
      defaultSession: {
        setPermissionRequestHandler: (handler) => void permissionHandlers.push(handler),
        webRequest: { onHeadersReceived: (listener) => void headerListeners.push(listener) },
      },
    },
  };

  /** Plays the renderer calling ipcRenderer.invoke(channel, payload) from a frame. */
  async function invoke(channel: string, frame: ShellWebFrame | null, payload: unknown): Promise<unknown> {
    const handler = ipcHandlers.get(channel);
    if (!handler) throw new Error(`No handler registered for '${channel}'`);
    return handler({ senderFrame: frame }, payload);
  }

  return {
    electron,
    app,
    windows: windows as readonly FakeWindow[],
    trays: trays as readonly FakeTray[],
    notifications,
    ipcHandlers,
    privilegedSchemes,
    protocolHandlers,
    permissionHandlers,
    headerListeners,
    invoke,
  };
}

export type FakeElectron = ReturnType<typeof createFakeElectron>;
