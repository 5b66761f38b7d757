// A small bootable Debian system disk for the boot proof, built from Debian's packages: the test bed's cloud
// kernel, an initramfs of busybox-static and the virtio modules, a root of busybox whose init prints a marker
// once it has checked a file on the root against its recorded SHA-256, and GRUB for both firmwares — an EFI
// image at the fallback path \EFI\BOOT\BOOTX64.EFI with a distribution-style stub grub.cfg, and GRUB's boot
// code in the MBR with its core image in a BIOS-boot partition. No mount is needed: mkfs.ext4 -d fills the
// root, mtools the ESP. Built once per set of inputs and kept under .vm/boot-images/.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import {
  chmod,
  copyFile,
  mkdir,
  mkdtemp,
  open,
  readFile,
  rename,
  rm,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool } from '../engine/testing/tools.ts';
import { kernelRoot } from './harness.ts';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BUSYBOX = '/usr/bin/busybox';
const GRUB_EFI = '/usr/lib/grub/x86_64-efi';
const GRUB_PC = '/usr/lib/grub/i386-pc';
const MiB = 1024 * 1024;
/** What the booted system prints once its root checked out; the boot proof waits for it. */
export const BOOT_MARKER = 'DISKLINE-BOOT-PROOF ok';
export const BOOT_MARKER_PATTERN = /DISKLINE-BOOT-PROOF ok root=UUID=[0-9a-f-]{36}/;
const INITRAMFS_MODULES = [
  'drivers/virtio/virtio_ring',
  'drivers/virtio/virtio',
  'drivers/virtio/virtio_pci_modern_dev',
  'drivers/virtio/virtio_pci_legacy_dev',
  'drivers/virtio/virtio_pci',
  'drivers/block/virtio_blk',
];
const ESP_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const BIOS_BOOT_TYPE = '21686148-6449-6E6F-744E-656564454649';
const ROOT_TYPE = '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709';
const mtools = { MTOOLS_SKIP_CHECK: '1' };

export interface BootImage {
  path: string;
  size: number;
  rootUuid: string;
}

/** Why the image cannot be built here, or null. */
export function bootImageUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'building the boot image needs root (mkfs with ownership kept)';
  if (!existsSync(join(GRUB_EFI, 'kernel.img')))
    return `GRUB for EFI is missing (${GRUB_EFI}; package grub-efi-amd64-bin)`;
  if (!existsSync(join(GRUB_PC, 'boot.img')))
    return `GRUB for BIOS is missing (${GRUB_PC}; package grub-pc-bin)`;
  if (!existsSync(BUSYBOX)) return `${BUSYBOX} is missing (package busybox-static)`;
  if (!guestKernel()) return 'no guest kernel in .vm/kernel (scripts/vm-kernel.sh fetches it)';
  for (const tool of ['grub-mkimage', 'mkfs.ext4', 'mkfs.vfat', 'mcopy', 'sfdisk']) {
    if (!['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((dir) => existsSync(join(dir, tool))))
      return `${tool} is missing`;
  }
  return null;
}

function guestKernel(): { image: string; version: string } | null {
  const boot = join(kernelRoot, 'boot');
  if (!existsSync(boot)) return null;
  const image = readdirSync(boot).find((name) => name.startsWith('vmlinuz-'));
  return image ? { image: join(boot, image), version: image.slice('vmlinuz-'.length) } : null;
}

/** The inputs the image is made of: a change to any of them makes a new image. */
async function inputsKey(): Promise<string> {
  const hash = createHash('sha256');
  const kernel = guestKernel()!;
  for (const file of [kernel.image, BUSYBOX, join(GRUB_EFI, 'kernel.img'), join(GRUB_PC, 'kernel.img')]) {
    const info = statSync(file);
    hash.update(`${file} ${info.size} ${info.mtimeMs}\n`);
  }
  hash.update(await readFile(fileURLToPath(import.meta.url)));
  return hash.digest('hex').slice(0, 16);
}

const initScript = `#!/bin/busybox sh
# The boot proof's initramfs: finds the root named on the command line, mounts it read-only, hands over.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
for m in $($bb cat /lib/load-order); do $bb insmod /lib/$m.ko || echo "initramfs: could not load $m"; done
uuid=$($bb sed -n 's/.*root=UUID=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
tries=0
until dev=$($bb findfs "UUID=$uuid" 2>/dev/null); do
  tries=$((tries + 1))
  if [ $tries -gt 300 ]; then echo "DISKLINE-BOOT-PROOF failed: no file system $uuid"; $bb poweroff -f; fi
  $bb sleep 0.1
done
$bb mount -t ext4 -o ro "$dev" /newroot || { echo "DISKLINE-BOOT-PROOF failed: cannot mount $dev"; $bb poweroff -f; }
$bb umount /sys /proc
$bb mount --move /dev /newroot/dev
exec $bb switch_root /newroot /sbin/init
`;

const rootInit = `#!/bin/busybox sh
# The restored system's init: checks its data against the recorded checksum, prints the marker, powers off.
bb=/bin/busybox
$bb mount -t proc proc /proc
for arg in $($bb cat /proc/cmdline); do case $arg in root=*) root=\${arg#root=} ;; esac; done
if ( cd /var/lib/proof && $bb sha256sum -c -s data.sha256 ); then
  echo "${BOOT_MARKER} root=$root"
else
  echo "DISKLINE-BOOT-PROOF failed: the root's data does not match its checksum"
fi
$bb poweroff -f
`;

async function buildInitramfs(work: string, version: string): Promise<string> {
  const root = join(work, 'initramfs');
  for (const dir of ['bin', 'lib', 'proc', 'sys', 'dev', 'newroot'])
    await mkdir(join(root, dir), { recursive: true });
  await copyFile(BUSYBOX, join(root, 'bin/busybox'));
  await writeFile(join(root, 'init'), initScript);
  await chmod(join(root, 'init'), 0o755);
  const modules = join(kernelRoot, 'lib/modules', version, 'kernel');
  for (const module of INITRAMFS_MODULES)
    await copyFile(join(modules, `${module}.ko`), join(root, 'lib', `${basename(module)}.ko`));
  await writeFile(join(root, 'lib/load-order'), INITRAMFS_MODULES.map((m) => basename(m)).join('\n'));
  const image = join(work, 'initrd.img');
  await runTool('/bin/sh', [
    '-c',
    `cd "$1" && find . | "$2" cpio -o -H newc 2>/dev/null | gzip -1 > "$3"`,
    'sh',
    root,
    BUSYBOX,
    image,
  ]);
  return image;
}

/** GRUB's BIOS boot code into the MBR and its core image into the BIOS-boot partition (what grub-bios-setup does). */
async function installBiosGrub(image: string, coreImage: string, biosBootLba: number): Promise<void> {
  const core = await readFile(coreImage);
  const sectors = Math.ceil(core.length / 512);
  // The first sector of core.img (diskboot) lists where the rest lies: right after it, `sectors - 1` sectors.
  const listEntry = 512 - 12;
  core.writeBigUInt64LE(BigInt(biosBootLba + 1), listEntry);
  core.writeUInt16LE(sectors - 1, listEntry + 8);
  core.writeUInt16LE(0x820, listEntry + 10);
  const boot = await readFile(join(GRUB_PC, 'boot.img'));
  boot.writeBigUInt64LE(BigInt(biosBootLba), 0x5c);
  boot[0x64] = 0xff;
  // A hard disk: the boot drive BIOSes pass is trusted (the jump that would check it becomes two NOPs).
  boot[0x66] = 0x90;
  boot[0x67] = 0x90;
  const handle = await open(image, 'r+');
  try {
    await handle.write(boot, 0, 440, 0);
    await handle.write(core, 0, core.length, biosBootLba * 512);
  } finally {
    await handle.close();
  }
}

async function build(path: string): Promise<BootImage> {
  const kernel = guestKernel()!;
  const work = await mkdtemp(join(tmpdir(), 'diskline-boot-image-'));
  try {
    const size = 256 * MiB;
    await writeFile(path, Buffer.alloc(0));
    await truncate(path, size);
    await runTool('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', path], {
      input: `label: gpt\nunit: sectors\n\nstart=2048, size=2048, type=${BIOS_BOOT_TYPE}\nstart=4096, size=65536, type=${ESP_TYPE}\nstart=69632, type=${ROOT_TYPE}\n`,
    });
    const layout = JSON.parse((await runTool('sfdisk', ['--json', path])).stdout).partitiontable
      .partitions as {
      start: number;
      size: number;
    }[];
    const [, esp, root] = layout as [
      unknown,
      { start: number; size: number },
      { start: number; size: number },
    ];
    const rootUuid = '3a1f5c2e-7d4b-4e8a-9c61-0b2d5e7f9a13';

    // The root: busybox, an init, the kernel and initramfs, GRUB's modules and configuration, and data to check.
    const tree = join(work, 'root');
    for (const dir of ['bin', 'sbin', 'etc', 'proc', 'sys', 'dev', 'boot/grub', 'var/lib/proof'])
      await mkdir(join(tree, dir), { recursive: true });
    await copyFile(BUSYBOX, join(tree, 'bin/busybox'));
    await writeFile(join(tree, 'sbin/init'), rootInit);
    await chmod(join(tree, 'sbin/init'), 0o755);
    await copyFile(kernel.image, join(tree, 'boot/vmlinuz'));
    await copyFile(await buildInitramfs(work, kernel.version), join(tree, 'boot/initrd.img'));
    await symlink('boot/vmlinuz', join(tree, 'vmlinuz'));
    const data = randomBytes(24 * MiB);
    await writeFile(join(tree, 'var/lib/proof/data.bin'), data);
    await writeFile(
      join(tree, 'var/lib/proof/data.sha256'),
      `${createHash('sha256').update(data).digest('hex')}  data.bin\n`,
    );
    await writeFile(join(tree, 'etc/fstab'), `UUID=${rootUuid} / ext4 ro 0 1\n`);
    for (const [source, target] of [
      [GRUB_EFI, 'boot/grub/x86_64-efi'],
      [GRUB_PC, 'boot/grub/i386-pc'],
    ] as const) {
      await mkdir(join(tree, target));
      for (const name of readdirSync(source).filter((n) => /\.(mod|lst)$/.test(n)))
        await copyFile(join(source, name), join(tree, target, name));
    }
    await writeFile(
      join(tree, 'boot/grub/grub.cfg'),
      [
        'set timeout=0',
        'set default=0',
        'serial --unit=0 --speed=115200',
        'terminal_input serial console',
        'terminal_output serial console',
        "menuentry 'Diskline boot proof' {",
        `\tsearch --no-floppy --fs-uuid --set=root ${rootUuid}`,
        `\techo 'GRUB: loading the kernel'`,
        `\tlinux /boot/vmlinuz root=UUID=${rootUuid} console=ttyS0 panic=-1 quiet`,
        '\tinitrd /boot/initrd.img',
        '}',
        '',
      ].join('\n'),
    );
    await runTool('mkfs.ext4', [
      '-q',
      '-F',
      '-U',
      rootUuid,
      '-L',
      'proof-root',
      '-d',
      tree,
      '-E',
      `offset=${root.start * 512}`,
      path,
      `${(root.size * 512) / 1024}k`,
    ]);

    // The ESP: GRUB at the fallback path with a stub that finds the root by UUID, as distributions install it.
    await runTool('mkfs.vfat', [
      '-F',
      '16',
      '-n',
      'ESP',
      '--offset',
      String(esp.start),
      path,
      String((esp.size * 512) / 1024),
    ]);
    const espImage = `${path}@@${esp.start * 512}`;
    const efiImage = join(work, 'BOOTX64.EFI');
    const efiModules = [
      'part_gpt',
      'part_msdos',
      'fat',
      'ext2',
      'search',
      'search_fs_uuid',
      'configfile',
      'normal',
      'linux',
      'echo',
      'serial',
      'terminal',
      'efi_gop',
      'gzio',
    ];
    await runTool('grub-mkimage', [
      '-O',
      'x86_64-efi',
      '-d',
      GRUB_EFI,
      '-o',
      efiImage,
      '-p',
      '/EFI/BOOT',
      ...efiModules,
    ]);
    await runTool('mmd', ['-i', espImage, '::/EFI', '::/EFI/BOOT'], { env: mtools });
    await runTool('mcopy', ['-i', espImage, efiImage, '::/EFI/BOOT/BOOTX64.EFI'], { env: mtools });
    await runTool('mcopy', ['-i', espImage, '-', '::/EFI/BOOT/grub.cfg'], {
      input: `search.fs_uuid ${rootUuid} root\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n`,
      env: mtools,
    });

    // BIOS: core image with what it needs to reach the root's /boot/grub by partition number.
    const coreImage = join(work, 'core.img');
    await runTool('grub-mkimage', [
      '-O',
      'i386-pc',
      '-d',
      GRUB_PC,
      '-o',
      coreImage,
      '-p',
      '(hd0,gpt3)/boot/grub',
      'biosdisk',
      'part_gpt',
      'ext2',
    ]);
    await installBiosGrub(path, coreImage, 2048);
    return { path, size, rootUuid };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The boot image, built on first use and kept under .vm/boot-images/ keyed by its inputs. */
export async function bootImage(): Promise<BootImage> {
  const reason = bootImageUnavailableReason();
  if (reason) throw new Error(`the boot image cannot be built: ${reason}`);
  const dir = join(projectRoot, '.vm', 'boot-images');
  await mkdir(dir, { recursive: true });
  const key = await inputsKey();
  const path = join(dir, `debian-busybox-${key}.img`);
  const meta = `${path}.json`;
  if (existsSync(path) && existsSync(meta)) return JSON.parse(await readFile(meta, 'utf8')) as BootImage;
  // Built beside its final name and renamed, so a build cut short never passes for a cached image.
  const partial = `${path}.partial-${process.pid}`;
  try {
    const built = await build(partial);
    // Images of earlier inputs are of no more use.
    for (const name of readdirSync(dir)) {
      if (name.startsWith('debian-busybox-') && !name.startsWith(basename(path)))
        await rm(join(dir, name), { force: true });
    }
    await rename(partial, path);
    const image = { ...built, path };
    await writeFile(meta, JSON.stringify(image));
    return image;
  } finally {
    await rm(partial, { force: true });
  }
}
