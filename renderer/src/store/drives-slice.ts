// Drives the engine sees: model, size, partitions with file systems and used space.
import type { Drive } from '../../../protocol/model.ts';
import { messageOf, type SliceCreator } from './app-store.ts';

export interface DrivesSlice {
  drives: Drive[];
  drivesLoaded: boolean;
  drivesError: string | null;
  loadDrives(): Promise<void>;
}

export const createDrivesSlice: SliceCreator<DrivesSlice> = (set, _get, engine) => ({
  drives: [],
  drivesLoaded: false,
  drivesError: null,
  async loadDrives() {
    try {
      const drives = await engine.call('drives.list', {});
      set({ drives, drivesLoaded: true, drivesError: null });
    } catch (error) {
      set({ drivesLoaded: true, drivesError: `Could not list drives: ${messageOf(error)}` });
    }
  },
});
