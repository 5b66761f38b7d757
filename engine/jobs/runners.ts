// The work behind each job kind, as the engine runs it by default: backup through a snapshot session into
// the repository, restore, verify, prune, restore drill and mount. Each reaches the other engine parts only
// through engine-parts.ts; a part that has not landed makes its job fail saying so.
import type { JobRunners } from '../api/engine.ts';
import { initRepository, listPoints, PartNotAvailableError } from './engine-parts.ts';

function notYet(what: string): never {
  throw new PartNotAvailableError(`${what}: not available yet in this build of the engine.`);
}

export function defaultRunners(): JobRunners {
  return {
    listPoints,
    initRepository,
    backup: async ({ source, repo }) => notYet(`Backing up ${source} to ${repo}`),
    restore: async ({ point, to }) => notYet(`Restoring ${point} to ${to}`),
    verify: async ({ repo }) => notYet(`Verifying ${repo}`),
    prune: async ({ repo }) => notYet(`Pruning ${repo}`),
    drill: async ({ point }) => notYet(`Restore drill of ${point}`),
    mount: async ({ point }) => notYet(`Mounting ${point}`),
    unmount: async (path) => notYet(`Unmounting ${path}`),
  };
}
