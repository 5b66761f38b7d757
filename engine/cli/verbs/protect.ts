// `diskline protect DEVICE --confirm DEVICE`: the one-time boot setup that lets the disk the machine runs from
// have consistent points (device-mapper): a partition — or each partition in use of a disk — is mounted through
// a linear target from the next restart on. Refused, with nothing changed, for a disk that is not there, the
// disk holding a repository, a missing or wrong confirmation, or a store on the volume itself; a mapped device
// (LVM, LUKS) needs nothing. The engine does it (protection.protect); this verb only asks and prints.
import { resolve } from 'node:path';
import { connectEngine } from '../../api/client.ts';
import { repoForEngine } from '../engine-jobs.ts';
import { printProtection } from '../protection-output.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

/** A repository path made absolute for the engine (whose cwd is not ours); names and object stores as given. */
function repoArgument(repo: string): string {
  return repo.includes('/') && !repo.includes('://') && !repo.startsWith('s3:')
    ? resolve(repo)
    : repoForEngine(repo);
}

export const verb: Verb = {
  usage: 'protect DEVICE --confirm DEVICE [--repo R]… [--store PATH] [--json]',
  summary:
    'Protect a disk or partition in use (the system disk too) with device-mapper from the next restart on',
  help:
    '  --confirm DEVICE       the same device again: the boot setup changes how this machine boots\n' +
    "  --repo R               a repository this machine backs up to besides the engine's (its disk cannot be protected)\n" +
    '  --store PATH           the copy-on-write store later backups use (refused on the protected volume)\n' +
    "  --json                 print the disk's protection afterwards (protocol DiskProtection)\n" +
    '  A whole disk protects each of its partitions in use. diskline unprotect DEVICE --confirm DEVICE undoes it;\n' +
    '  diskline protection shows the state.',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      confirm: { type: 'string' },
      repo: { type: 'string', multiple: true },
      store: { type: 'string' },
      json: { type: 'boolean' },
    });
    const [device, ...extra] = positionals;
    if (!device)
      throw new UsageError('which disk or partition? e.g. diskline protect /dev/sda --confirm /dev/sda');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const client = await connectEngine();
    try {
      // Named from here: the engine's cwd is not ours. The confirmation is made absolute alike, so it still
      // has to name the same device as written.
      const disk = await client.call('protection.protect', {
        device: resolve(device),
        ...(values.confirm !== undefined ? { confirm: resolve(values.confirm) } : {}),
        ...(values.repo?.length ? { repos: values.repo.map(repoArgument) } : {}),
        ...(values.store ? { store: resolve(values.store) } : {}),
      });
      printProtection([disk], values.json);
    } finally {
      await client.close();
    }
  },
};
