// The slice of Electron the shell uses, as an interface: main.ts passes the real `electron` module (so
// tsc checks it against Electron's own typings) and the tests pass testing/fake-electron.ts. Keeping the
// slice small keeps the fake honest; option and template types are Electron's own.
import type {
  BrowserWindowConstructorOptions,
  CustomScheme,
  Menu,
  MenuItemConstructorOptions,
  NativeImage,
  NotificationConstructorOptions,
  Settings,
} from 'electron';

export type ShellEvent = { preventDefault(): void };

export interface ShellWebFrame {
  readonly url: string;
  readonly parent: ShellWebFrame | null;
}

export interface ShellWebContents {
  readonly id: number;
  send(channel: string, ...args: unknown[]): void;
  setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' }): void;
  on(event: 'will-navigate', listener: (event: ShellEvent, url: string) => void): this;
  on(event: 'will-attach-webview', listener: (event: ShellEvent) => void): this;
}

export interface ShellWindow {
  readonly webContents: ShellWebContents;
  loadURL(url: string): Promise<void>;
  show(): void;
  focus(): void;
  hide(): void;
  restore(): void;
  isMinimized(): boolean;
  isDestroyed(): boolean;
  on(event: 'close', listener: (event: ShellEvent) => void): this;
  on(event: 'closed', listener: () => void): this;
  once(event: 'ready-to-show', listener: () => void): this;
}

export interface ShellTray {
  setImage(image: ShellImage): void;
  setToolTip(toolTip: string): void;
  setContextMenu(menu: ShellMenu | null): void;
  on(event: 'click', listener: () => void): this;
}

/** Handed through as they come (the fake gives stand-ins that record what they were built from). */
export type ShellImage = NativeImage;
export type ShellMenu = Menu;

export type ShellInvokeEvent = { readonly senderFrame: ShellWebFrame | null };

export type HeadersDetails = { url: string; responseHeaders?: Record<string, string[]> };

export interface ShellElectron {
  app: {
    requestSingleInstanceLock(): boolean;
    whenReady(): Promise<void>;
    quit(): void;
    getLoginItemSettings(): { openAtLogin: boolean };
    setLoginItemSettings(settings: Settings): void;
    on(event: 'second-instance', listener: () => void): unknown;
    on(event: 'window-all-closed', listener: () => void): unknown;
    on(event: 'before-quit', listener: () => void): unknown;
    on(
      event: 'web-contents-created',
      listener: (event: unknown, contents: ShellWebContents) => void,
    ): unknown;
  };
  BrowserWindow: new (options: BrowserWindowConstructorOptions) => ShellWindow;
  Tray: new (image: ShellImage) => ShellTray;
  Menu: { buildFromTemplate(template: MenuItemConstructorOptions[]): ShellMenu };
  Notification: (new (
    options: NotificationConstructorOptions,
  ) => { show(): void }) & { isSupported(): boolean };
  nativeImage: { createFromPath(path: string): ShellImage };
  ipcMain: {
    handle(channel: string, listener: (event: ShellInvokeEvent, ...args: unknown[]) => unknown): void;
  };
  protocol: {
    registerSchemesAsPrivileged(schemes: CustomScheme[]): void;
    handle(scheme: string, handler: (request: Request) => Response | Promise<Response>): void;
  };
  session: {
    defaultSession: {
      setPermissionRequestHandler(
        handler: (contents: unknown, permission: string, callback: (granted: boolean) => void) => void,
      ): void;
      webRequest: {
        onHeadersReceived(
          listener: (
            details: HeadersDetails,
            callback: (response: { responseHeaders?: Record<string, string[] | string> }) => void,
          ) => void,
        ): void;
      };
    };
  };
}
