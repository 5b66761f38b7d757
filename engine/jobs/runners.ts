// The work behind each job kind, as the engine runs it: backup through a snapshot session into the
// repository, restore, verify, prune, the restore drill, and restore points mounted read-only.

import type { Plan, PointSummary } from '../../protocol/model.ts';
import type { StateStore } from '../config/state.ts';
import { Repository } from '../repository/repository.ts';
import { type AttachedVolume, attachVolume } from '../tap/attach.ts';
import { runBackup } from './backup.ts';
import { runDrill } from './drill.ts';
import type { DrillBootOptions } from './drill-boot.ts';
import { runInstantRestore } from './instant-restore.ts';
import { runPrune, runVerify } from './maintenance.ts';
import type { JobContext } from './manager.ts';
import { MountTable } from './mount.ts';
import { enginePassphrase, withRepository } from './repository-access.ts';
import { runRestore } from './restore.ts';

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
    },
    context: JobContext,
    publishBlockMap: (source: BlockMapProvider) => void,
  ): Promise<Record<string, unknown> | null>;
  restore(
    params: { repo: string; point: string; to: string; instant: boolean },
    context: JobContext,
  ): Promise<Record<string, unknown> | null>;
  verify(
    params: { repo: string; readData: boolean },
    context: JobContext,
  ): Promise<Record<string, unknown> | null>;
  prune(
    params: { repo: string; retention: Plan['retention']; dryRun: boolean },
    context: JobContext,
  ): Promise<Record<string, unknown> | null>;
  drill(
    params: { repo: string; point: string; boot?: DrillBootOptions },
    context: JobContext,
  ): Promise<Record<string, unknown> | null>;
  mount(params: { repo: string; point: string; dir: string | undefined }): Promise<{ path: string }>;
  unmount(path: string): Promise<void>;
  /** Releases what the runners hold (mounted points) when the engine stops. */
  close?(): Promise<void>;
  /**
   * Serves `source` through the tap, adopting the helper that already serves it when no other engine holds it;
   * change tracking persists under `trackingDir`.
   */
  attach(source: string, trackingDir: string): Promise<AttachedVolume>;
  listPoints(repo: string): Promise<PointSummary[]>;
  initRepository(repo: string, encrypted: boolean): Promise<void>;
}

export function defaultRunners(state: StateStore): JobRunners {
  const mounts = new MountTable();
  return {
    listPoints: (repo) => withRepository(repo, async (opened) => (await opened.listPoints()).points),
    initRepository: async (repo, encrypted) => {
      const created = await Repository.init(repo, {
        password: enginePassphrase(),
        insecureNoEncryption: !encrypted,
      });
      await created.close();
    },
    backup: (params, context, publishBlockMap) => runBackup(params, context, publishBlockMap),
    restore: (params, context) =>
      params.instant ? runInstantRestore(params, context) : runRestore(params, context),
    verify: (params, context) => runVerify(params, context, state),
    prune: (params, context) => runPrune(params, context),
    drill: (params, context) => runDrill(params, context, state),
    mount: ({ repo, point, dir }) => mounts.mount(repo, point, dir),
    unmount: (path) => mounts.unmount(path),
    close: () => mounts.unmountAll(),
    attach: (source, trackingDir) => attachVolume(source, { trackingDir, adopt: true }),
  };
}
