// The work behind each job kind, as the engine runs it: backup through a snapshot session into the
// repository, restore, verify, prune, the restore drill, and restore points mounted read-only. Each job's
// code is loaded when a job of its kind first runs, so a one-shot engine in a CLI command loads only its own.
import type { Plan, PointSummary } from '../../protocol/model.ts';
import type { StateStore } from '../config/state.ts';
import type { HeldPath } from '../handles/held-path.ts';
import { Repository } from '../repository/repository.ts';
import type { AttachedVolume } from '../tap/attach.ts';
import type { DrillBootOptions } from './drill-boot.ts';
import type { JobContext } from './manager.ts';
import type { MountTable } from './mount.ts';
import { enginePassphrase, withRepository } from './repository-access.ts';

/** A running backup's block map (a SnapshotSession): one watch per subscriber. */
export interface BlockMapProvider {
  watchBlockMap(cells: number): {
    readonly cellCount: number;
    readonly unitsPerCell: number;
    full(): Uint8Array;
    changes(): number[];
    close(): void;
  };
}

/** The work behind each job kind; defaultRunners reach the other engine parts, tests may replace them. */
export interface JobRunners {
  backup(
    params: {
      source: string;
      repo: string;
      container: Plan['container'] | undefined;
      /** The tap serving the source, when attached: the backup takes a consistent point through it. */
      volume: AttachedVolume | null;
      /** Start afresh: an interrupted backup of this source is not taken over. */
      noResume?: boolean | undefined;
      /** Refuse a source whose used map cannot be trusted instead of copying it whole. */
      strict?: boolean | undefined;
      preHook?: string | undefined;
      postHook?: string | undefined;
      /** Back up a device in use without the tap anyway (the point records it crash-consistent). */
      allowInconsistent?: boolean | undefined;
    },
    context: JobContext,
    publishBlockMap: (source: BlockMapProvider) => void,
  ): Promise<Record<string, unknown> | null>;
  restore(
    params: { repo: string; point: string; to: string; instant: boolean; journalPath?: string },
    context: JobContext,
  ): Promise<Record<string, unknown> | null>;
  verify(
    params: { repo: string; name?: string; readData: boolean; readDataSubset?: string | undefined },
    context: JobContext,
  ): Promise<Record<string, unknown> | null>;
  prune(
    params: { repo: string; retention: Plan['retention']; dryRun: boolean },
    context: JobContext,
  ): Promise<Record<string, unknown> | null>;
  copy(
    params: { from: string; to: string; points: string[] },
    context: JobContext,
  ): Promise<Record<string, unknown> | null>;
  drill(
    params: { repo: string; name?: string; point: string; boot?: DrillBootOptions },
    context: JobContext,
  ): Promise<Record<string, unknown> | null>;
  /** Mounts on `dir` (held; the mount takes it over and closes it when unmounted), or a new temp dir. */
  mount(params: { repo: string; point: string; dir: HeldPath | null }): Promise<{ path: string }>;
  unmount(path: string): Promise<void>;
  /** Releases what the runners hold (mounted points) when the engine stops. */
  close?(): Promise<void>;
  /**
   * Serves `source` through the tap, adopting the helper that already serves it when no other engine holds it;
   * change tracking persists under `trackingDir`.
   */
  attach(source: string, trackingDir: string): Promise<AttachedVolume>;
  listPoints(repo: string): Promise<PointSummary[]>;
  /**
   * One point by id, unique prefix or 'latest', with the repository's own errors (a damaged manifest is damage,
   * an unknown id a failure naming it); without it, points are found in listPoints.
   */
  findPoint?(repo: string, reference: string): Promise<PointSummary>;
  initRepository(repo: string, encrypted: boolean): Promise<void>;
}

export function defaultRunners(state: StateStore): JobRunners {
  let mounts: MountTable | null = null;
  const mountTable = async () => (mounts ??= new (await import('./mount.ts')).MountTable());
  return {
    listPoints: (repo) => withRepository(repo, async (opened) => (await opened.listPoints()).points),
    findPoint: (repo, reference) =>
      withRepository(repo, async (opened) =>
        opened.summarize(await opened.loadManifest(await opened.resolvePointId(reference))),
      ),
    initRepository: async (repo, encrypted) => {
      const created = await Repository.init(repo, {
        password: enginePassphrase(),
        insecureNoEncryption: !encrypted,
      });
      await created.close();
    },
    backup: async (params, context, publishBlockMap) =>
      (await import('./backup.ts')).runBackup(params, context, publishBlockMap),
    restore: async (params, context) =>
      params.instant
        ? (await import('./instant-restore.ts')).runInstantRestore(params, context)
        : (await import('./restore.ts')).runRestore(params, context),
    verify: async (params, context) => (await import('./maintenance.ts')).runVerify(params, context, state),
    prune: async (params, context) => (await import('./maintenance.ts')).runPrune(params, context),
    copy: async (params, context) => ({ ...(await (await import('./copy.ts')).runCopy(params, context)) }),
    drill: async (params, context) => (await import('./drill.ts')).runDrill(params, context, state),
    mount: async ({ repo, point, dir }) => (await mountTable()).mount(repo, point, dir),
    unmount: async (path) => (await mountTable()).unmount(path),
    close: async () => {
      await mounts?.unmountAll();
    },
    attach: async (source, trackingDir) =>
      (await import('../tap/attach.ts')).attachVolume(source, { trackingDir, adopt: true }),
  };
}
