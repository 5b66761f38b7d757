// Renders a piece of the UI with a fresh store around a fake engine, for component tests.
import { render } from '@testing-library/react';
import type { ReactElement } from 'react';
import { type AppStore, createAppStore, StoreContext } from '../store/app-store.ts';
import { FakeEngine } from './fake-engine.ts';

export function renderWithStore(ui: ReactElement, engine: FakeEngine = new FakeEngine()) {
  const store: AppStore = createAppStore(engine);
  store.getState().setConnection({ status: 'connected', retryInMs: null, reason: null, transport: 'bridge' });
  const result = render(<StoreContext.Provider value={store}>{ui}</StoreContext.Provider>);
  return { ...result, store, engine };
}

/** A DataTransfer stand-in for drag events (jsdom has none). */
export function makeDataTransfer(): DataTransfer {
  const data = new Map<string, string>();
  return {
    get types() {
      return [...data.keys()];
    },
    setData: (type: string, value: string) => void data.set(type, value),
    getData: (type: string) => data.get(type) ?? '',
    dropEffect: 'none',
    effectAllowed: 'all',
  } as unknown as DataTransfer;
}
