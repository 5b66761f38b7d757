// The work behind each job kind, as the engine runs it: backup through a snapshot session into the
// repository, restore, verify, prune, the restore drill, and restore points mounted read-only. Each job's
// code is loaded when a job of its kind first runs, so a one-shot engine in a CLI command loads only its own.
import type { JobRunners } from '../api/engine.ts';
import type { StateStore } from '../config/state.ts';
import { Repository } from '../repository/repository.ts';
import type { MountTable } from './mount.ts';
import { enginePassphrase, withRepository } from './repository-access.ts';

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
    drill: async (params, context) => (await import('./drill.ts')).runDrill(params, context, state),
    mount: async ({ repo, point, dir }) => (await mountTable()).mount(repo, point, dir),
    unmount: async (path) => (await mountTable()).unmount(path),
    close: async () => {
      await mounts?.unmountAll();
    },
    attach: async (source, trackingDir) =>
      (await import('../tap/attach.ts')).attachVolume(source, { trackingDir }),
  };
}
