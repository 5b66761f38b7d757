// Transient updates: runs `apply` with a selected slice of the store now and whenever it changes, outside React's
// render cycle — for things that change many times a second (block map, progress, throughput).
import { useEffect, useRef } from 'react';
import { type AppState, useAppStore } from '../store/app-store.ts';

export function useStoreEffect<T>(
  select: (state: AppState) => T,
  apply: (value: T) => void,
  deps: unknown[],
): void {
  const store = useAppStore();
  const applyRef = useRef(apply);
  applyRef.current = apply;
  // biome-ignore lint/correctness/useExhaustiveDependencies: the caller lists what the selector depends on.
  useEffect(() => {
    let last = select(store.getState());
    applyRef.current(last);
    return store.subscribe((state) => {
      const next = select(state);
      if (Object.is(next, last)) return;
      last = next;
      applyRef.current(next);
    });
  }, [store, ...deps]);
}
