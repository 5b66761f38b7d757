// Builds Diskline's rescue media: a Debian kernel, an initramfs of busybox and the drivers that reach the media,
// and a compressed root (rescue-root.ts) holding Node, the engine and the tools a restore calls, on a hybrid ISO
// that GRUB boots under BIOS (El Torito and, written to a USB stick, the MBR) and UEFI (an EFI system
// partition inside the image). The rescue program in the root finds a repository and restores a point through
// the engine's restore job (rescue.sh).
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTool } from '../volume-files/loop-range.ts';
import { moduleClosure } from './kernel-modules.ts';
import { gatherRoot, rootUnavailableReason } from './rescue-root.ts';

const here = dirname(fileURLToPath(import.meta.url));
const defaultProjectRoot = resolve(here, '../..');
const BUSYBOX = '/usr/bin/busybox';
/** The drivers the initramfs loads to reach the media: virtual disks and CDs, IDE/SATA, NVMe, USB, SD cards,
 * and the file systems the media and its root use. Those a kernel lacks are reported, not fatal. */
const INITRAMFS_MODULES = [
  'virtio_pci',
  'virtio_blk',
  'virtio_scsi',
  'sd_mod',
  'sr_mod',
  'ata_piix',
  'ata_generic',
  'ahci',
  'nvme',
  'xhci_pci',
  'ehci_pci',
  'ohci_pci',
  'uhci_hcd',
  'usb_storage',
  'uas',
  'sdhci_pci',
  'mmc_block',
  'isofs',
  'vfat',
  'nls_cp437',
  'nls_iso8859_1',
  'squashfs',
  'loop',
  'overlay',
];
const VOLUME_ID = 'DISKLINE_RESCUE';

export interface MediaOptions {
  /** Where the image goes. */
  out: string;
  /** A repository location baked in: DEVICE[:PATH], DEVICE being /dev/…, LABEL=…, UUID=… or PARTUUID=…. */
  repo?: string;
  /** A passphrase file baked in (the media then holds the repository's key: keep it like the key). */
  keyFile?: string;
  /** Appended to the kernel command line, e.g. the unattended restore's diskline.restore=… settings. */
  bootArgs?: string;
  /** The serial port is the console the rescue program runs on (headless machines, virtual machines). */
  serialConsole?: boolean;
  /** An unpacked Debian kernel package: boot/vmlinuz-<version> and lib/modules/<version>. */
  kernelDir?: string;
  /** The project whose engine goes onto the media (default: this one). */
  projectRoot?: string;
  /** squashfs's zstd level (default 9; at 15 the squashfs step took 193 s on a loaded 2-core machine). */
  compressionLevel?: number;
}

export interface MediaResult {
  path: string;
  bytes: number;
  rootBytes: number;
  kernelVersion: string;
  /** Drivers the initramfs would load that this kernel has neither built in nor as modules. */
  missingDrivers: string[];
  seconds: number;
  /** Seconds per step: root (gathering the tree), squashfs, iso. */
  steps: Record<string, number>;
}

function kernelIn(dir: string): { image: string; version: string; modulesDir: string } | null {
  const boot = join(dir, 'boot');
  if (!existsSync(boot)) return null;
  const image = readdirSync(boot).find((name) => name.startsWith('vmlinuz-'));
  if (!image) return null;
  const version = image.slice('vmlinuz-'.length);
  const modulesDir = join(dir, 'lib/modules', version);
  if (!existsSync(join(modulesDir, 'modules.dep'))) return null;
  return { image: join(boot, image), version, modulesDir };
}

export function defaultKernelDir(projectRoot = defaultProjectRoot): string {
  return join(projectRoot, '.vm', 'kernel');
}

/** Why media cannot be built here, or null. */
export function mediaUnavailableReason(
  options: { kernelDir?: string; projectRoot?: string } = {},
): string | null {
  const kernelDir = options.kernelDir ?? defaultKernelDir(options.projectRoot);
  if (!kernelIn(kernelDir))
    return `no unpacked kernel in ${kernelDir} (scripts/vm-kernel.sh fetches Debian's; --kernel-dir names another)`;
  for (const [tool, pkg] of [
    ['grub-mkrescue', 'grub-common'],
    ['xorriso', 'xorriso'],
    ['mksquashfs', 'squashfs-tools'],
    ['mformat', 'mtools'],
  ] as const) {
    if (!['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((dir) => existsSync(join(dir, tool))))
      return `${tool} is missing (package ${pkg})`;
  }
  if (!existsSync('/usr/lib/grub/i386-pc/cdboot.img'))
    return 'GRUB for BIOS is missing (package grub-pc-bin)';
  if (!existsSync('/usr/lib/grub/x86_64-efi/kernel.img'))
    return 'GRUB for EFI is missing (package grub-efi-amd64-bin)';
  return rootUnavailableReason();
}

function grubConfig(kernelArgs: string, serialConsole: boolean): string {
  const entry = (title: string, consoles: string) =>
    [
      `menuentry '${title}' {`,
      `\tlinux /boot/vmlinuz ${consoles} quiet panic=10 ${kernelArgs}`.trimEnd(),
      '\tinitrd /boot/initrd.img',
      '}',
    ].join('\n');
  // The last console= is the one the rescue program runs on; the kernel writes its messages to both.
  const screen = entry('Diskline rescue', 'console=ttyS0,115200 console=tty0');
  const serial = entry('Diskline rescue (serial console)', 'console=tty0 console=ttyS0,115200');
  return [
    'set timeout=3',
    'set default=0',
    'serial --unit=0 --speed=115200',
    'terminal_input serial console',
    'terminal_output serial console',
    ...(serialConsole ? [serial, screen] : [screen, serial]),
    '',
  ].join('\n');
}

async function buildInitramfs(
  work: string,
  modulesDir: string,
  mediaId: string,
): Promise<{ path: string; missing: string[] }> {
  const root = join(work, 'initramfs');
  for (const dir of ['bin', 'lib/modules', 'proc', 'sys', 'dev', 'newroot'])
    await mkdir(join(root, dir), { recursive: true });
  await cp(BUSYBOX, join(root, 'bin/busybox'));
  await cp(join(here, 'rescue-init.sh'), join(root, 'init'));
  await chmod(join(root, 'init'), 0o755);
  await writeFile(join(root, 'media-id'), `${mediaId}\n`);
  const { load, missing } = moduleClosure(modulesDir, INITRAMFS_MODULES);
  for (const module of load)
    await cp(join(modulesDir, module.path), join(root, 'lib/modules', `${module.name}.ko`));
  await writeFile(join(root, 'lib/load-order'), `${load.map((m) => m.name).join('\n')}\n`);
  const path = join(work, 'initrd.img');
  await runTool('/bin/sh', [
    '-c',
    `cd "$1" && find . | "$2" cpio -o -H newc 2>/dev/null | gzip -6 > "$3"`,
    'sh',
    root,
    BUSYBOX,
    path,
  ]);
  return { path, missing };
}

export async function buildRescueMedia(options: MediaOptions): Promise<MediaResult> {
  const started = performance.now();
  const projectRoot = options.projectRoot ?? defaultProjectRoot;
  const kernelDir = options.kernelDir ?? defaultKernelDir(projectRoot);
  const reason = mediaUnavailableReason({ kernelDir, projectRoot });
  if (reason) throw new Error(`cannot build rescue media: ${reason}`);
  const kernel = kernelIn(kernelDir)!;
  const out = resolve(options.out);
  const work = await mkdtemp(join(tmpdir(), 'diskline-media-'));
  const partial = join(dirname(out), `.${basename(out)}.partial-${process.pid}`);
  try {
    const mediaId = randomBytes(16).toString('hex');
    const iso = join(work, 'iso');
    await mkdir(join(iso, 'boot/grub'), { recursive: true });
    await mkdir(join(iso, 'diskline'), { recursive: true });
    await cp(kernel.image, join(iso, 'boot/vmlinuz'));
    const initramfs = await buildInitramfs(work, kernel.modulesDir, mediaId);
    await cp(initramfs.path, join(iso, 'boot/initrd.img'));
    await writeFile(join(iso, 'diskline/media-id'), `${mediaId}\n`);
    await writeFile(
      join(iso, 'boot/grub/grub.cfg'),
      grubConfig(options.bootArgs ?? '', options.serialConsole === true),
    );

    const steps: Record<string, number> = {};
    let stepStarted = performance.now();
    const stepDone = (name: string) => {
      steps[name] = Math.round((performance.now() - stepStarted) / 100) / 10;
      stepStarted = performance.now();
    };
    const tree = join(work, 'root');
    await gatherRoot(tree, {
      projectRoot,
      node: join(projectRoot, 'node_modules/node/bin/node'),
      modulesDir: kernel.modulesDir,
      ...(options.repo ? { repo: options.repo } : {}),
      ...(options.keyFile ? { keyFile: options.keyFile } : {}),
    });
    stepDone('root');
    const squashfs = join(iso, 'diskline/root.squashfs');
    await runTool('mksquashfs', [
      tree,
      squashfs,
      '-noappend',
      '-no-progress',
      '-all-root',
      '-comp',
      'zstd',
      '-Xcompression-level',
      String(options.compressionLevel ?? 9),
    ]);
    stepDone('squashfs');
    const rootBytes = (await stat(squashfs)).size;
    // The squashfs is written; the tree it came from is no longer needed and may be large.
    await rm(tree, { recursive: true, force: true });

    await runTool('grub-mkrescue', ['-o', partial, iso, '--', '-volid', VOLUME_ID]);
    await rename(partial, out);
    stepDone('iso');
    return {
      path: out,
      bytes: (await stat(out)).size,
      rootBytes,
      kernelVersion: kernel.version,
      missingDrivers: initramfs.missing,
      seconds: (performance.now() - started) / 1000,
      steps,
    };
  } finally {
    await rm(partial, { force: true });
    await rm(work, { recursive: true, force: true });
  }
}
