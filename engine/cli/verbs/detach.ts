// `diskline detach <device|image>`: stops serving a volume the daemon hosts (refused while its loop device is
// mounted). A volume attached in the foreground is detached with Ctrl-C in its terminal.
import { resolve } from 'node:path';
import { SocketClient } from '../../api/client.ts';
import { socketPath } from '../../config/socket-path.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'detach <device|image>',
  summary: 'Stop serving an attached disk or image (unmount its loop device first)',
  async run(args) {
    const { positionals } = parseVerbArgs(args, {});
    const [source, ...extra] = positionals;
    if (!source) throw new UsageError('which device or image? the one given to diskline attach');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const daemon = await SocketClient.connect(socketPath()).catch(() => null);
    if (!daemon)
      throw new Error(
        `no engine daemon answers at ${socketPath()}; a volume attached with 'diskline attach' in the foreground is detached with Ctrl-C there`,
      );
    try {
      await daemon.call('volumes.detach', { source: resolve(source) });
      process.stdout.write(`${resolve(source)} is detached\n`);
      return;
    } finally {
      await daemon.close();
    }
  },
};
