// A restore in two steps: preview (the engine says exactly what would be overwritten and hands a token bound to
// that very target), then start with the token — after the user typed the device's name when it is a whole device.
// Also mounting a point read-only to browse its files.
import type { Result } from '../../../protocol/messages.ts';
import type { SliceCreator } from './app-store.ts';

export type RestorePreview = Result<'restore.preview'>;

export interface RestoreRequest {
  repo: string;
  pointId: string;
  target: string;
  preview: RestorePreview | null;
  loading: boolean;
  error: string | null;
}

export interface RestoreSlice {
  restore: RestoreRequest | null;
  /** Mounted points: point id → directory. */
  mounts: Record<string, string>;
  openRestore(pointId: string, target: string): Promise<void>;
  confirmRestore(instant: boolean): Promise<boolean>;
  closeRestore(): void;
  mountPoint(pointId: string): Promise<void>;
  unmountPoint(pointId: string): Promise<void>;
}

export const createRestoreSlice: SliceCreator<RestoreSlice> = (set, get, engine) => ({
  restore: null,
  mounts: {},
  async openRestore(pointId, target) {
    const repo = get().currentRepo;
    if (!repo) return;
    set({ restore: { repo, pointId, target, preview: null, loading: true, error: null } });
    try {
      const preview = await engine.call('restore.preview', { repo, point: pointId, to: target });
      if (get().restore?.target !== target || get().restore?.pointId !== pointId) return;
      set({ restore: { repo, pointId, target, preview, loading: false, error: null } });
    } catch (error) {
      set({
        restore: {
          repo,
          pointId,
          target,
          preview: null,
          loading: false,
          error: `Could not prepare the restore onto ${target}: ${(error as Error).message}`,
        },
      });
    }
  },
  async confirmRestore(instant) {
    const request = get().restore;
    if (!request?.preview || request.preview.refusal) return false;
    set({ restore: { ...request, loading: true, error: null } });
    try {
      const job = await engine.call('restore.start', {
        repo: request.repo,
        point: request.pointId,
        to: request.target,
        confirmToken: request.preview.confirmToken,
        instant,
      });
      get().applyJob(job);
      get().followJob(job.id);
      set({ restore: null });
      get().setView('live');
      return true;
    } catch (error) {
      set({
        restore: {
          ...request,
          loading: false,
          error: `The restore onto ${request.target} did not start: ${(error as Error).message}`,
        },
      });
      return false;
    }
  },
  closeRestore() {
    set({ restore: null });
  },
  async mountPoint(pointId) {
    const repo = get().currentRepo;
    if (!repo) return;
    const result = await get().attempt(`mount:${pointId}`, () =>
      engine.call('mount.start', { repo, point: pointId }),
    );
    if (result) set({ mounts: { ...get().mounts, [pointId]: result.path } });
  },
  async unmountPoint(pointId) {
    const path = get().mounts[pointId];
    if (!path) return;
    const done = await get().attempt(`mount:${pointId}`, () => engine.call('mount.stop', { path }));
    if (done) {
      const { [pointId]: _unmounted, ...rest } = get().mounts;
      set({ mounts: rest });
    }
  },
});
