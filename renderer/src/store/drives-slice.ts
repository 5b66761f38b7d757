// Drives the engine sees: model, size, partitions with file systems and used space.
import type { Drive } from '../../../protocol/model.ts';
import { messageOf, type SliceCreator } from './app-store.ts';

export interface DrivesSlice {
  drives: Drive[];
  drivesLoaded: boolean;
  drivesError: string | null;
  /** What the engine said when it attached a drive (e.g. "mount /dev/loop3 instead of the disk"). */
  attachNotes: Record<string, string[]>;
  loadDrives(): Promise<void>;
  /** Serves a drive through the tap, so backups of it stay consistent while it is in use. */
  attachDrive(device: string): Promise<void>;
  detachDrive(device: string): Promise<void>;
}

export const createDrivesSlice: SliceCreator<DrivesSlice> = (set, get, engine) => ({
  drives: [],
  drivesLoaded: false,
  drivesError: null,
  attachNotes: {},
  async attachDrive(device) {
    const attached = await get().attempt(`attach:${device}`, () =>
      engine.call('volumes.attach', { source: device }),
    );
    if (!attached) return;
    set({
      attachNotes: {
        ...get().attachNotes,
        [device]: [
          `Mount ${attached.loopDevice} instead of ${device} while it is in use.`,
          ...attached.notes,
        ],
      },
    });
    await get().loadDrives();
  },
  async detachDrive(device) {
    const done = await get().attempt(`attach:${device}`, () =>
      engine.call('volumes.detach', { source: device }),
    );
    if (!done) return;
    const { [device]: _gone, ...rest } = get().attachNotes;
    set({ attachNotes: rest });
    await get().loadDrives();
  },
  async loadDrives() {
    try {
      const drives = await engine.call('drives.list', {});
      set({ drives, drivesLoaded: true, drivesError: null });
      // How each is protected changes with what is mounted and attached: read it with the drives.
      await get().loadProtection();
    } catch (error) {
      set({ drivesLoaded: true, drivesError: `Could not list drives: ${messageOf(error)}` });
    }
  },
});
