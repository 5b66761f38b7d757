// Turns the tray model into Electron's tray: icon per state, tooltip, context menu with click handlers that
// dispatch the model's actions. Re-renders are coalesced, because job progress can arrive many times a second.
import { join } from 'node:path';
import type { MenuItemConstructorOptions } from 'electron';
import type { ShellElectron, ShellTray } from './shell-electron.ts';
import type { TrayAction, TrayIconState, TrayMenuItem, TrayView } from './tray-model.ts';

export function trayIconPath(assetsDir: string, state: TrayIconState): string {
  return join(assetsDir, 'tray', `tray-${state}.png`);
}

export function menuTemplate(
  items: TrayMenuItem[],
  dispatch: (action: TrayAction) => void,
): MenuItemConstructorOptions[] {
  return items.map((item): MenuItemConstructorOptions => {
    if (item.type === 'separator') return { type: 'separator' };
    const action = item.action;
    const click = action ? () => dispatch(action) : undefined;
    if (item.type === 'checkbox') {
      return { type: 'checkbox', label: item.label, checked: item.checked, enabled: item.enabled, click };
    }
    if (item.submenu) {
      return { label: item.label, enabled: item.enabled, submenu: menuTemplate(item.submenu, dispatch) };
    }
    return { label: item.label, enabled: item.enabled, click };
  });
}

/** Default minimum time between two renders of the tray. */
const defaultRenderIntervalMs = 500;

export class TrayPresenter {
  readonly #electron: Pick<ShellElectron, 'Tray' | 'Menu' | 'nativeImage'>;
  readonly #assetsDir: string;
  readonly #view: () => TrayView;
  readonly #dispatch: (action: TrayAction) => void;
  readonly #tray: ShellTray;
  #shownIcon: TrayIconState | null = null;
  /** Every icon state shown, in order (one entry per change): what the tray told the user over time. */
  readonly shownIcons: TrayIconState[] = ['idle'];
  #timer: ReturnType<typeof setTimeout> | null = null;
  #lastRender = 0;
  readonly #renderIntervalMs: number;

  constructor(
    electron: Pick<ShellElectron, 'Tray' | 'Menu' | 'nativeImage'>,
    assetsDir: string,
    view: () => TrayView,
    dispatch: (action: TrayAction) => void,
    renderIntervalMs = defaultRenderIntervalMs,
  ) {
    this.#renderIntervalMs = renderIntervalMs;
    this.#electron = electron;
    this.#assetsDir = assetsDir;
    this.#view = view;
    this.#dispatch = dispatch;
    this.#tray = new electron.Tray(electron.nativeImage.createFromPath(trayIconPath(assetsDir, 'idle')));
    this.#shownIcon = 'idle';
    this.render();
  }

  get tray(): ShellTray {
    return this.#tray;
  }

  /** Renders now. */
  render(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#lastRender = Date.now();
    const view = this.#view();
    if (view.icon !== this.#shownIcon) {
      this.#tray.setImage(
        this.#electron.nativeImage.createFromPath(trayIconPath(this.#assetsDir, view.icon)),
      );
      this.#shownIcon = view.icon;
      this.shownIcons.push(view.icon);
    }
    this.#tray.setToolTip(view.tooltip);
    this.#tray.setContextMenu(this.#electron.Menu.buildFromTemplate(menuTemplate(view.menu, this.#dispatch)));
  }

  /**
   * Renders soon: at once if the icon changes (a backup starting or failing is news however short it is) or
   * the last render is old enough, otherwise once the interval has passed (progress only).
   */
  update(): void {
    if (this.#view().icon !== this.#shownIcon) {
      this.render();
      return;
    }
    if (this.#timer) return;
    const wait = this.#lastRender + this.#renderIntervalMs - Date.now();
    if (wait <= 0) this.render();
    else this.#timer = setTimeout(() => this.render(), wait);
  }

  dispose(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }
}
