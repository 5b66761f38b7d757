// `diskline unprotect <partition> --confirm <partition>`: removes a partition from the boot setup (and the
// initramfs hook with the last one); from the next restart on it is mounted directly again.
import { unprotect } from '../../device-mapper/protection.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'unprotect <partition> --confirm <partition>',
  summary: 'Remove a partition from the boot-time protection (from the next restart on)',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, { confirm: { type: 'string' } });
    const [device, ...extra] = positionals;
    if (!device)
      throw new UsageError('which partition? e.g. diskline unprotect /dev/sda2 --confirm /dev/sda2');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    await unprotect({ device, confirm: values.confirm });
    process.stdout.write(`${device}: unprotected from the next restart on\n`);
  },
};
