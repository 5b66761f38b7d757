// `diskline attach <device|image>`: serves a disk or image through the tap as a loop device; mount that device
// instead of the disk, and backups of it become consistent points while it is in use. With the engine daemon
// running, the daemon hosts the volume (kept across restarts until `diskline detach`); without it, this command
// hosts it in the foreground until Ctrl-C (which detaches, refused while mounted).
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SocketClient } from '../../api/client.ts';
import { socketPath } from '../../config/socket-path.ts';
import { defaultStateDir } from '../../config/state.ts';
import { attachVolume } from '../../tap/attach.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'attach <device|image> [--foreground] [--json]',
  summary: 'Serve a disk or image through the tap as a loop device, for consistent backups while in use',
  help:
    '  --foreground           host the volume in this process even if the daemon runs (until Ctrl-C)\n' +
    '  --json                 print {source, loopDevice, notes}\n' +
    '  Mount the printed loop device instead of the disk. The disk itself must not be mounted.',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      foreground: { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const [source, ...extra] = positionals;
    if (!source) throw new UsageError('which device or image? e.g. diskline attach /dev/sdb');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const print = (result: { source: string; loopDevice: string; notes: string[] }) => {
      if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      else {
        process.stdout.write(
          `${result.source} is attached as ${result.loopDevice}; mount ${result.loopDevice} to use it\n`,
        );
        for (const note of result.notes) process.stdout.write(`note: ${note}\n`);
      }
    };
    if (!values.foreground) {
      const daemon = await SocketClient.connect(socketPath()).catch(() => null);
      if (daemon) {
        try {
          print(await daemon.call('volumes.attach', { source }));
          return;
        } finally {
          await daemon.close();
        }
      }
    }
    const volume = await attachVolume(resolve(source), { trackingDir: join(defaultStateDir(), 'tracking') });
    print({ source: volume.source, loopDevice: volume.loopDevice, notes: volume.notes });
    if (!values.json) process.stdout.write('hosting it here until Ctrl-C (no engine daemon is running)\n');
    let stop = false;
    const onSignal = () => {
      stop = true;
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // The event loop stays free: intercepted writes are answered on it.
    for (;;) {
      await sleep(300);
      if (!stop) continue;
      try {
        await volume.detach();
        return;
      } catch (error) {
        process.stderr.write(`diskline attach: ${(error as Error).message}\n`);
        stop = false;
      }
    }
  },
};
