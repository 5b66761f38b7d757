// `diskline protection [DEVICE]`: per disk (every drive, or the one named), how a backup can take its point
// while it is in use — the tap, device-mapper (now), needs a restart (protected, boot setup pending),
// unprotected (and what to do), or cannot (why) — what the next restart changes, and each volume's state.
// Asks the engine (the daemon, or one hosted here), which knows which disks the tap serves.
import { resolve } from 'node:path';
import { connectEngine } from '../../api/client.ts';
import { printProtection } from '../protection-output.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'protection [DEVICE] [--json]',
  summary: 'Show how each disk is protected while in use, and what a restart will change',
  help:
    '  --json                 print the protocol DiskProtection objects\n' +
    '  diskline protect DEVICE --confirm DEVICE sets up device-mapper protection; diskline unprotect undoes it.',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, { json: { type: 'boolean' } });
    const [device, ...extra] = positionals;
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const client = await connectEngine();
    try {
      printProtection(
        await client.call('protection.list', device ? { device: resolve(device) } : {}),
        values.json,
      );
    } finally {
      await client.close();
    }
  },
};
