// Whether a backup source can be copied without the tap and still give a true point: an image file or a device
// nobody uses can; a device (or an image through its loop device) that is mounted, swapped on, held, or open for
// writing by another process cannot —
// its copy would be torn. Such a backup is refused, saying how to make it consistent, unless the caller
// accepts a crash-consistent point.
import { realpath, stat } from 'node:fs/promises';
import { RefusalError } from '../../protocol/failure.ts';
import { deviceUses, loopDevicesBacking, writersOf } from '../device/busy.ts';

/** Why the source is in use (empty: nothing else touches it). Throws a refusal unless `allowInconsistent`. */
export async function checkUnprotectedSource(source: string, allowInconsistent: boolean): Promise<string[]> {
  const info = await stat(source).catch(() => null);
  if (!info) return [];
  // An image file is in use through the loop devices over it (`mount -o loop`), as a device is in itself.
  const devices = info.isBlockDevice() ? [source] : info.isFile() ? await loopDevicesBacking(source) : [];
  const uses: string[] = [];
  for (const device of devices) {
    const deviceUse = [...(await deviceUses(device)), ...(await writersOf(device))];
    uses.push(...(device === source ? deviceUse : deviceUse.map((use) => `through ${device}: ${use}`)));
  }
  if (uses.length === 0 || allowInconsistent) return uses;
  // A held source (/proc/PID/fd/N) is named by the file it leads to.
  const name = await realpath(source).catch(() => source);
  throw new RefusalError(
    `refusing to back up ${name}: it is in use (${uses.join('; ')}) and not served through the tap, so the ` +
      'copy would be torn. To make it consistent: unmount it (or stop what writes to it) and back it up again; ' +
      `or attach it (\`diskline attach ${name}\` with the daemon running), use the loop device it gives instead, ` +
      'and back that up. To take a crash-consistent point anyway, add --allow-inconsistent.',
  );
}
