// `diskline protection <disk>`: per volume, how a backup can take its point while it is in use — device-
// mapper (now), needs a restart (protected, boot setup pending), unprotected (and what to do), or cannot (why).

import { RefusalError } from '../../../protocol/failure.ts';
import { protectionStatus } from '../../device-mapper/protection.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'protection <disk> [--json]',
  summary: 'Show how each volume of a disk is protected while in use',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, { json: { type: 'boolean' } });
    const [device, ...extra] = positionals;
    if (!device) throw new UsageError('which disk? e.g. diskline protection /dev/sda');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const statuses = await protectionStatus(device);
    if (values.json) process.stdout.write(`${JSON.stringify(statuses)}\n`);
    else
      for (const status of statuses)
        process.stdout.write(`${status.device}  ${status.kind}  ${status.detail}\n`);
    // A disk that is not there is an error; a volume that cannot be protected is an answer.
    const missing = statuses.find((status) => status.detail === `${device} is not there`);
    if (missing) throw new RefusalError(missing.detail);
  },
};
