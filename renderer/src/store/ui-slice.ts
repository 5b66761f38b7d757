// Which view is open, the theme, the engine link's state, notices, and errors keyed by the place they happened
// (so each is shown next to the button that caused it). Preferences persist in the given storage.

import type { StoreApi } from 'zustand/vanilla';
import type { EngineClient } from '../../../protocol/messages.ts';
import type { ConnectionState } from '../engine/connection.ts';
import { type AppState, messageOf } from './app-store.ts';

export const viewNames = ['drives', 'plans', 'live', 'timeline', 'schedules', 'health', 'settings'] as const;
export type ViewName = (typeof viewNames)[number];
export type ThemeChoice = 'system' | 'light' | 'dark';

export interface Notice {
  id: number;
  tone: 'ok' | 'error' | 'info';
  text: string;
}

export interface UiSlice {
  view: ViewName;
  theme: ThemeChoice;
  connection: ConnectionState;
  /** place → error message; cleared when the action at that place succeeds. */
  errors: Record<string, string>;
  notices: Notice[];
  setView(view: ViewName): void;
  setTheme(theme: ThemeChoice): void;
  setConnection(connection: ConnectionState): void;
  /** Runs a call for the place `key`: records its error there, or clears it. Returns null on failure. */
  attempt<T>(key: string, call: () => Promise<T>): Promise<T | null>;
  clearError(key: string): void;
  notify(tone: Notice['tone'], text: string): void;
  dismissNotice(id: number): void;
  loadPreferences(): void;
  savePreferences(): void;
}

const preferencesKey = 'diskline.preferences';
let nextNoticeId = 1;

export function createUiSlice(
  set: StoreApi<AppState>['setState'],
  get: StoreApi<AppState>['getState'],
  _engine: EngineClient,
  storage: Pick<Storage, 'getItem' | 'setItem'> | null,
): UiSlice {
  return {
    view: 'timeline',
    theme: 'system',
    connection: { status: 'connecting', retryInMs: null, reason: null, transport: 'websocket' },
    errors: {},
    notices: [],
    setView(view) {
      set({ view });
    },
    setTheme(theme) {
      set({ theme });
      get().savePreferences();
    },
    setConnection(connection) {
      set({ connection });
    },
    async attempt(key, call) {
      try {
        const result = await call();
        if (key in get().errors) get().clearError(key);
        return result;
      } catch (error) {
        set({ errors: { ...get().errors, [key]: messageOf(error) } });
        return null;
      }
    },
    clearError(key) {
      const { [key]: _cleared, ...rest } = get().errors;
      set({ errors: rest });
    },
    notify(tone, text) {
      const notice = { id: nextNoticeId++, tone, text };
      set({ notices: [...get().notices.slice(-4), notice] });
    },
    dismissNotice(id) {
      set({ notices: get().notices.filter((n) => n.id !== id) });
    },
    loadPreferences() {
      if (!storage) return;
      try {
        const saved = JSON.parse(storage.getItem(preferencesKey) ?? '{}') as {
          theme?: ThemeChoice;
          repos?: string[];
          currentRepo?: string | null;
        };
        if (saved.theme === 'light' || saved.theme === 'dark' || saved.theme === 'system')
          set({ theme: saved.theme });
        if (Array.isArray(saved.repos)) set({ repos: saved.repos.filter((r) => typeof r === 'string') });
        if (typeof saved.currentRepo === 'string') set({ currentRepo: saved.currentRepo });
      } catch {
        // Unreadable preferences: start from defaults.
      }
    },
    savePreferences() {
      if (!storage) return;
      const { theme, repos, currentRepo } = get();
      storage.setItem(preferencesKey, JSON.stringify({ theme, repos, currentRepo }));
    },
  };
}
