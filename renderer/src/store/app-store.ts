// The one UI store, built from slices (drives, points/timeline, jobs, block maps, plans, restore, ui). Created per
// engine client so tests get a fresh store with their own fake client; the engine's events write into it directly.
import { createContext, useContext } from 'react';
import { useStore } from 'zustand';
import { createStore, type StoreApi } from 'zustand/vanilla';
import type { EngineClient } from '../../../protocol/messages.ts';
import { type BlockMapSlice, createBlockMapSlice } from './blockmap-slice.ts';
import { createDrivesSlice, type DrivesSlice } from './drives-slice.ts';
import { createJobsSlice, type JobsSlice } from './jobs-slice.ts';
import { createPlansSlice, type PlansSlice } from './plans-slice.ts';
import { createPointsSlice, type PointsSlice } from './points-slice.ts';
import { createProtectionSlice, type ProtectionSlice } from './protection-slice.ts';
import { createRestoreSlice, type RestoreSlice } from './restore-slice.ts';
import { createUiSlice, type UiSlice } from './ui-slice.ts';

export type AppState = DrivesSlice &
  ProtectionSlice &
  PointsSlice &
  JobsSlice &
  BlockMapSlice &
  PlansSlice &
  RestoreSlice &
  UiSlice;
export type AppStore = StoreApi<AppState>;

/** What every slice creator receives: the store's set/get and the engine client its actions call. */
export type SliceCreator<T> = (
  set: StoreApi<AppState>['setState'],
  get: StoreApi<AppState>['getState'],
  engine: EngineClient,
) => T;

export interface StoreOptions {
  /** Where preferences (theme, repositories) are kept between sessions; none in tests. */
  storage?: Pick<Storage, 'getItem' | 'setItem'> | null;
}

export function createAppStore(engine: EngineClient, options: StoreOptions = {}): AppStore {
  return createStore<AppState>()((set, get) => ({
    ...createDrivesSlice(set, get, engine),
    ...createProtectionSlice(set, get, engine),
    ...createPointsSlice(set, get, engine),
    ...createJobsSlice(set, get, engine),
    ...createBlockMapSlice(set, get, engine),
    ...createPlansSlice(set, get, engine),
    ...createRestoreSlice(set, get, engine),
    ...createUiSlice(set, get, engine, options.storage ?? null),
  }));
}

export const StoreContext = createContext<AppStore | null>(null);

export function useAppStore(): AppStore {
  const store = useContext(StoreContext);
  if (!store) throw new Error('useApp used outside <StoreContext.Provider>');
  return store;
}

/** Selects from the store; pass useShallow(...) when selecting several fields. */
export function useApp<T>(selector: (state: AppState) => T): T {
  return useStore(useAppStore(), selector);
}

/** Turns anything thrown by a call into the sentence the UI shows. */
export function messageOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // Errors crossing Electron's IPC arrive wrapped; the user needs only the engine's sentence.
  return message.replace(/^Error invoking remote method '[^']*': (?:\w*Error: )?/, '');
}
