// "Start at login": Electron's login items on macOS and Windows; on Linux, where Electron has none, an XDG
// autostart entry (~/.config/autostart/diskline.desktop) that desktop sessions run at login. Either way the
// app starts with --hidden: the tray only, the window opens from it.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ShellElectron } from './shell-electron.ts';

export type LoginItem = { isEnabled(): boolean; setEnabled(enabled: boolean): void };

export const startHiddenFlag = '--hidden';

export function electronLoginItem(app: ShellElectron['app']): LoginItem {
  return {
    isEnabled: () => app.getLoginItemSettings().openAtLogin,
    setEnabled: (enabled) => app.setLoginItemSettings({ openAtLogin: enabled, args: [startHiddenFlag] }),
  };
}

/** Quotes one Exec argument as the Desktop Entry spec asks (reserved characters inside double quotes). */
function execArg(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `"${arg.replace(/(["`$\\])/g, '\\$1')}"`;
}

export function autostartEntry(command: string[]): string {
  return [
    '[Desktop Entry]',
    'Type=Application',
    'Name=Diskline',
    'Comment=Back up a whole disk while it is in use',
    `Exec=${[...command, startHiddenFlag].map(execArg).join(' ')}`,
    'Icon=diskline-desktop',
    'Terminal=false',
    'X-GNOME-Autostart-enabled=true',
    '',
  ].join('\n');
}

/**
 * The XDG autostart entry in `configHome` (XDG_CONFIG_HOME, else ~/.config). `command` starts this app: the
 * AppImage's path, the installed binary, or in development the Electron binary and the app folder.
 */
export function xdgAutostart(configHome: string, command: string[]): LoginItem {
  const path = join(configHome, 'autostart', 'diskline.desktop');
  return {
    isEnabled: () => existsSync(path),
    setEnabled(enabled) {
      if (!enabled) {
        rmSync(path, { force: true });
        return;
      }
      mkdirSync(join(configHome, 'autostart'), { recursive: true });
      writeFileSync(path, autostartEntry(command));
    },
  };
}
