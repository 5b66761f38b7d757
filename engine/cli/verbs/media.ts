// `diskline media --out rescue.iso`: builds bootable rescue media (engine/media/build-media.ts) from the kernel
// and the Debian packages this machine has. The image is a hybrid: burned to a CD or written to a USB stick
// (--raw names it so) it boots under BIOS and UEFI.
import { resolve } from 'node:path';
import { buildRescueMedia } from '../../media/build-media.ts';
import { formatBytes } from '../repository-access.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

export const verb: Verb = {
  usage:
    'media --out F [--raw] [--repo LOCATION] [--key-file F] [--boot-args "…"] [--serial-console] [--json]',
  summary:
    'Build bootable rescue media (ISO, or a USB disk image) that finds a repository and restores a point',
  help:
    '  --out F                where the image goes\n' +
    '  --raw                  a disk image for a USB stick (dd it onto the stick); the same hybrid image as the ISO\n' +
    '  --repo LOCATION        bake in where the repository is: DEVICE[:PATH], DEVICE being /dev/…, LABEL=…, UUID=…\n' +
    '                         or PARTUUID=… (default: the rescue system scans the attached disks)\n' +
    '  --key-file F           bake in the passphrase file (the media then unlocks the repository: keep it safe)\n' +
    '  --boot-args "…"        add to the kernel command line; an unattended restore is\n' +
    '                         diskline.restore=<point|latest> diskline.target=/dev/X diskline.confirm=X\n' +
    '  --serial-console       run the rescue program on the serial port (headless machines)\n' +
    "  --kernel-dir D         an unpacked Debian kernel package (default: the test bed's cloud kernel)\n" +
    '  --json                 print {path, bytes, rootBytes, kernelVersion, missingDrivers, seconds}',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      out: { type: 'string' },
      raw: { type: 'boolean' },
      repo: { type: 'string' },
      'key-file': { type: 'string' },
      'boot-args': { type: 'string' },
      'serial-console': { type: 'boolean' },
      'kernel-dir': { type: 'string' },
      json: { type: 'boolean' },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    if (!values.out) throw new UsageError('--out is required: where the image goes');
    if (
      values.repo !== undefined &&
      !/^(\/dev\/|(LABEL|UUID|PARTUUID)=)[^\s:]+(:\/?\S*)?$|^auto$/.test(values.repo)
    )
      throw new UsageError(`--repo ${values.repo}: give DEVICE[:PATH], e.g. LABEL=backups:/diskline`);
    if (values['boot-args'] !== undefined && /[\n'{}]/.test(values['boot-args']))
      throw new UsageError('--boot-args takes plain words (no quotes, braces or new lines)');
    const result = await buildRescueMedia({
      out: values.out,
      ...(values.repo ? { repo: values.repo } : {}),
      ...(values['key-file'] ? { keyFile: resolve(values['key-file']) } : {}),
      ...(values['boot-args'] ? { bootArgs: values['boot-args'] } : {}),
      ...(values['serial-console'] ? { serialConsole: true } : {}),
      ...(values['kernel-dir'] ? { kernelDir: resolve(values['kernel-dir']) } : {}),
    });
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      return;
    }
    if (result.missingDrivers.length)
      process.stderr.write(
        `note: kernel ${result.kernelVersion} lacks ${result.missingDrivers.join(', ')}: the media cannot reach devices that need them (--kernel-dir takes another kernel)\n`,
      );
    process.stdout.write(
      `${values.raw ? 'USB disk image' : 'Rescue ISO'} ${result.path}: ${formatBytes(result.bytes)} (root ${formatBytes(result.rootBytes)}), kernel ${result.kernelVersion}, built in ${result.seconds.toFixed(0)} s (${Object.entries(
        result.steps,
      )
        .map(([step, seconds]) => `${step} ${seconds} s`)
        .join(', ')})\n`,
    );
  },
};
