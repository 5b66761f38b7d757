// `diskline boot-check <device|image> [--fix] [--json]`: would this (restored) system disk boot? Reads the
// ESP, the MBR's boot code, fstab and the boot configuration; exit 0 only when nothing found would stop it
// booting. --fix applies the safe fixes (the fallback loader copy) and checks again.
import { realpath, stat } from 'node:fs/promises';
import { KindedError, RefusalError } from '../../../protocol/failure.ts';
import { applySafeFixes, checkBoot, describeBootReport } from '../../boot-check/check.ts';
import { deviceUses, loopDevicesBacking } from '../../device/busy.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage: 'boot-check <device|image> [--fix] [--json]',
  summary: 'Check that a restored system disk has what a boot needs (and apply the safe fixes)',
  help:
    '  --fix                  copy the installed EFI loader to the fallback path \\EFI\\BOOT\\BOOTX64.EFI when it is missing\n' +
    '  --json                 print the report as JSON',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      fix: { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const [given, ...extra] = positionals;
    if (!given) throw new UsageError('which disk or image? give its path');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const disk = await realpath(given).catch(() => {
      throw new UsageError(`${given} does not exist`);
    });
    const info = await stat(disk);
    // Its file systems are mounted here to be read: one mounted elsewhere (or an image attached) is not.
    const uses = info.isBlockDevice() ? await deviceUses(disk) : await loopDevicesBacking(disk);
    if (uses.length) {
      throw new RefusalError(
        `refusing to check ${disk}: it is in use (${uses.join('; ')}); unmount or detach it first`,
      );
    }
    let report = await checkBoot(disk);
    const fixed = values.fix ? await applySafeFixes(disk, report) : [];
    if (fixed.length) report = await checkBoot(disk);
    if (values.json) process.stdout.write(`${JSON.stringify({ ...report, fixed })}\n`);
    else {
      for (const line of fixed) process.stdout.write(`fixed: ${line}\n`);
      process.stdout.write(`${describeBootReport(report).join('\n')}\n`);
    }
    if (!report.bootable)
      throw new KindedError('failure', `${disk} would not boot as it is (see the problems above)`);
  },
};
