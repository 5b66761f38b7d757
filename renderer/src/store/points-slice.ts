// Restore points of the current repository and the timeline's selection and zoom. The list of repositories the
// user works with lives here too (from plans, the address's #repo= and settings).
import type { Params, Result } from '../../../protocol/messages.ts';
import type { PointSummary } from '../../../protocol/model.ts';
import { messageOf, type SliceCreator } from './app-store.ts';

export const zoomLevels = ['hours', 'days', 'weeks', 'months', 'years'] as const;
export type ZoomLevel = (typeof zoomLevels)[number];

export interface PointsSlice {
  repos: string[];
  currentRepo: string | null;
  points: PointSummary[];
  pointsLoading: boolean;
  pointsError: string | null;
  selectedPointId: string | null;
  zoom: ZoomLevel;
  addRepo(repo: string): void;
  /** The engine's read-only test of an S3 location (the add-repository form); null when the call failed. */
  checkS3(params: Params<'repo.checkS3'>): Promise<Result<'repo.checkS3'> | null>;
  removeRepo(repo: string): void;
  setCurrentRepo(repo: string | null): void;
  loadPoints(): Promise<void>;
  selectPoint(id: string | null): void;
  setZoom(zoom: ZoomLevel): void;
  zoomBy(steps: number): void;
}

export const createPointsSlice: SliceCreator<PointsSlice> = (set, get, engine) => ({
  repos: [],
  currentRepo: null,
  points: [],
  pointsLoading: false,
  pointsError: null,
  selectedPointId: null,
  zoom: 'days',
  addRepo(repo) {
    const trimmed = repo.trim();
    if (!trimmed) return;
    if (!get().repos.includes(trimmed)) set({ repos: [...get().repos, trimmed] });
    if (!get().currentRepo) get().setCurrentRepo(trimmed);
    get().savePreferences();
  },
  checkS3(params) {
    return get().attempt('repo.checkS3', () => engine.call('repo.checkS3', params));
  },
  removeRepo(repo) {
    const repos = get().repos.filter((r) => r !== repo);
    set({ repos });
    if (get().currentRepo === repo) get().setCurrentRepo(repos[0] ?? null);
    get().savePreferences();
  },
  setCurrentRepo(repo) {
    set({ currentRepo: repo, points: [], selectedPointId: null, pointsError: null });
    get().savePreferences();
    if (repo) void get().loadPoints();
  },
  async loadPoints() {
    const repo = get().currentRepo;
    if (!repo) return;
    set({ pointsLoading: true });
    try {
      const points = await engine.call('points.list', { repo });
      if (get().currentRepo !== repo) return;
      points.sort((a, b) => a.time.localeCompare(b.time));
      const selected = get().selectedPointId;
      set({
        points,
        pointsLoading: false,
        pointsError: null,
        selectedPointId: selected && points.some((p) => p.id === selected) ? selected : null,
      });
    } catch (error) {
      set({
        pointsLoading: false,
        pointsError: `Could not read the restore points of ${repo}: ${messageOf(error)}`,
      });
    }
  },
  selectPoint(id) {
    set({ selectedPointId: id });
  },
  setZoom(zoom) {
    set({ zoom });
  },
  zoomBy(steps) {
    const index = zoomLevels.indexOf(get().zoom) + steps;
    set({ zoom: zoomLevels[Math.max(0, Math.min(zoomLevels.length - 1, index))]! });
  },
});
