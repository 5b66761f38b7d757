// The work behind each job kind, as the engine runs it: backup through a snapshot session into the
// repository, restore, verify, prune, the restore drill, and restore points mounted read-only.
import type { JobRunners } from '../api/engine.ts';
import type { StateStore } from '../config/state.ts';
import { Repository } from '../repository/repository.ts';
import { attachVolume } from '../tap/attach.ts';
import { runBackup } from './backup.ts';
import { runDrill } from './drill.ts';
import { runInstantRestore } from './instant-restore.ts';
import { runPrune, runVerify } from './maintenance.ts';
import { MountTable } from './mount.ts';
import { enginePassphrase, withRepository } from './repository-access.ts';
import { runRestore } from './restore.ts';

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
