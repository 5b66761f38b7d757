// Block maps of running backups: one byte per cell (CellState), mutated in place as 'blockmap' events arrive and
// announced by bumping `revision`. The canvas subscribes to the store outside React and redraws on a new revision,
// so a 10+ Hz stream never re-renders a component.
import { CellState, type EventData } from '../../../protocol/messages.ts';
import type { SliceCreator } from './app-store.ts';

export interface BlockMapFrame {
  jobId: string;
  cells: Uint8Array;
  unitsPerCell: number;
  /** Bumped on every change; the cells array itself is reused. */
  revision: number;
}

export interface BlockMapSlice {
  blockMaps: Record<string, BlockMapFrame>;
  applyBlockMap(event: EventData<'blockmap'>): void;
  /** Asks for a job's block-map stream once per connection (the engine would otherwise send it twice). */
  subscribeBlockMap(jobId: string, cells: number): Promise<void>;
  /** Forgets the streams asked for: after a reconnection they must be asked for again. */
  forgetBlockMapSubscriptions(): void;
}

function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

const highestState = CellState.writing;

export const createBlockMapSlice: SliceCreator<BlockMapSlice> = (set, get, engine) => {
  const subscribed = new Set<string>();
  return {
    blockMaps: {},
    applyBlockMap(event) {
      const existing = get().blockMaps[event.jobId];
      let frame: BlockMapFrame;
      if (event.full || !existing || existing.cells.length !== event.cellCount) {
        const cells = new Uint8Array(event.cellCount);
        if (event.cells) cells.set(decodeBase64(event.cells).subarray(0, event.cellCount));
        frame = {
          jobId: event.jobId,
          cells,
          unitsPerCell: event.unitsPerCell,
          revision: (existing?.revision ?? 0) + 1,
        };
      } else {
        const cells = existing.cells;
        const changes = event.changes ?? [];
        for (let i = 0; i + 1 < changes.length; i += 2) {
          const index = changes[i]!;
          const state = changes[i + 1]!;
          if (index >= 0 && index < cells.length && state >= 0 && state <= highestState) cells[index] = state;
        }
        frame = { ...existing, revision: existing.revision + 1 };
      }
      set({ blockMaps: { ...get().blockMaps, [event.jobId]: frame } });
    },
    async subscribeBlockMap(jobId, cells) {
      if (subscribed.has(jobId)) return;
      subscribed.add(jobId);
      const done = await get().attempt(`blockmap:${jobId}`, () =>
        engine.call('blockmap.subscribe', { jobId, cells }),
      );
      if (!done) subscribed.delete(jobId);
    },
    forgetBlockMapSubscriptions() {
      subscribed.clear();
    },
  };
};

/** Cells per state, for the legend. */
export function countCells(cells: Uint8Array): number[] {
  const counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < cells.length; i++) {
    const state = cells[i]!;
    if (state < counts.length) counts[state]! += 1;
  }
  return counts;
}
