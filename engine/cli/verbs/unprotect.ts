// `diskline unprotect DEVICE --confirm DEVICE`: removes a partition (or every partition of a disk) from the
// boot setup, and the initramfs hook with the last one; from the next restart on it is mounted directly again.
// The engine does it (protection.unprotect); refused with nothing changed without the disk named again.
import { resolve } from 'node:path';
import { connectEngine } from '../../api/client.ts';
import { printProtection } from '../protection-output.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'unprotect DEVICE --confirm DEVICE [--json]',
  summary: 'Remove a disk or partition from the boot-time protection (from the next restart on)',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      confirm: { type: 'string' },
      json: { type: 'boolean' },
    });
    const [device, ...extra] = positionals;
    if (!device)
      throw new UsageError('which disk or partition? e.g. diskline unprotect /dev/sda --confirm /dev/sda');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const client = await connectEngine();
    try {
      // Named from here: the engine's cwd is not ours. The confirmation is made absolute alike, so it still
      // has to name the same device as written.
      const disk = await client.call('protection.unprotect', {
        device: resolve(device),
        ...(values.confirm !== undefined ? { confirm: resolve(values.confirm) } : {}),
      });
      printProtection([disk], values.json);
    } finally {
      await client.close();
    }
  },
};
