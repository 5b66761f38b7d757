// The initramfs of a system disk the reboot proof boots, made as that system's `update-initramfs -u` would make
// it: initramfs-tools' mkinitramfs run with the system's own /etc (its initramfs-tools configuration, hooks and
// scripts, and /etc/diskline) laid over the host's, and the test bed kernel's modules and config. The system's
// /etc is read from its ext4 root with debugfs, without mounting it; mkinitramfs runs in a mount namespace of
// its own, so the host sees none of it.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from '../engine/testing/tools.ts';
import { kernelRoot } from './harness.ts';

const MKINITRAMFS = '/usr/sbin/mkinitramfs';

/** Why the initramfs cannot be made here, or null. */
export function systemInitramfsUnavailableReason(): string | null {
  if (!existsSync(MKINITRAMFS)) return `${MKINITRAMFS} is missing (package initramfs-tools-core)`;
  return null;
}

/** Writes the initramfs of the system whose root is the ext4 at `rootOffset` bytes into `disk`, to `out`. */
export async function systemInitramfs(disk: string, rootOffset: number, out: string): Promise<void> {
  const version = (await runTool('ls', [join(kernelRoot, 'lib/modules')])).stdout.trim().split('\n')[0]!;
  const work = await mkdtemp(join(tmpdir(), 'diskline-system-initramfs-'));
  try {
    await mkdir(join(work, 'system'));
    await runTool('debugfs', ['-R', `rdump /etc ${join(work, 'system')}`, `${disk}?offset=${rootOffset}`]);
    if (!existsSync(join(work, 'system/etc/initramfs-tools/initramfs.conf')))
      throw new Error(`the system on ${disk} has no /etc/initramfs-tools/initramfs.conf`);
    await runTool('unshare', [
      '-m',
      '/bin/sh',
      '-c',
      `set -eu
for layer in etc lib boot; do mkdir -p "$1/$layer-up" "$1/$layer-work"; done
mount -t overlay system-etc -o "lowerdir=$1/system/etc:/etc,upperdir=$1/etc-up,workdir=$1/etc-work" /etc
mount -t overlay kernel-modules -o "lowerdir=$2/lib:/usr/lib,upperdir=$1/lib-up,workdir=$1/lib-work" /usr/lib
mount -t overlay kernel-boot -o "lowerdir=$2/boot:/boot,upperdir=$1/boot-up,workdir=$1/boot-work" /boot
exec ${MKINITRAMFS} -o "$3" "$4"`,
      'sh',
      work,
      kernelRoot,
      out,
      version,
    ]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
