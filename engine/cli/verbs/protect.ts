// `diskline protect <partition> --confirm <partition>`: the one-time boot setup that lets the disk the machine
// runs from have consistent points (device-mapper): the partition is mounted through a linear target from the
// next restart on. Refused — with nothing changed — for a disk that is not there, the disk holding a
// repository, or a store on the volume itself; a mapped device (LVM, LUKS) needs nothing.
import { resolve } from 'node:path';
import { defaultStateDir, StateStore } from '../../config/state.ts';
import { protect } from '../../device-mapper/protection.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

/** Repositories this machine's plans write to, plus the ones named here: their disks cannot be protected. */
export async function knownRepositories(named: string[]): Promise<string[]> {
  const state = await StateStore.open(defaultStateDir()).catch(() => null);
  return [...named, ...(state?.plans.map((plan) => plan.repo) ?? [])];
}

export const verb: Verb = {
  usage: 'protect <partition> --confirm <partition> [--repo R]… [--store PATH] [--json]',
  summary: 'Protect a partition in use (the system disk too) with device-mapper from the next restart on',
  help:
    '  --confirm DEVICE       the same partition again: the boot setup changes how this machine boots\n' +
    '  --repo R               a repository this machine backs up to (its disk cannot be protected)\n' +
    '  --store PATH           the copy-on-write store later backups use (refused on the protected volume)\n' +
    '  diskline unprotect <partition> --confirm <partition> undoes it; diskline protection shows the state.',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      confirm: { type: 'string' },
      repo: { type: 'string', multiple: true },
      store: { type: 'string' },
      json: { type: 'boolean' },
    });
    const [device, ...extra] = positionals;
    if (!device) throw new UsageError('which partition? e.g. diskline protect /dev/sda2 --confirm /dev/sda2');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const status = await protect({
      device,
      confirm: values.confirm,
      repositories: await knownRepositories((values.repo ?? []).map((repo) => resolve(repo))),
      storePath: values.store,
    });
    if (values.json) process.stdout.write(`${JSON.stringify(status)}\n`);
    else process.stdout.write(`${status.device}: ${status.detail}\n`);
  },
};
