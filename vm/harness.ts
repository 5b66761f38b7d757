// The machine-level test bed: boots Debian's cloud kernel under qemu (KVM where the host has it, TCG where it
// does not) with the host's root shared read-only over virtiofs, runs a shell script as root inside the guest
// and returns what it printed and its exit status. Tests use it for what this host's kernel cannot do
// (device-mapper, a real boot); test disks are plain files attached as virtio drives (/dev/vda, /dev/vdb, …).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, readdirSync, watch } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** How long a guest may run before it is taken as hung: a failure guard, far over a loaded host's minutes. */
const DEFAULT_GUARD_MS = 30 * 60_000;
/** Where scripts/vm-kernel.sh unpacks the guest kernel and its modules. */
export const kernelRoot = join(projectRoot, '.vm', 'kernel');

const QEMU = 'qemu-system-x86_64';
/** The guest CPU qemu emulates. */
export const guestCpuModel = 'max';
/** ESC [ … letter, and ESC c (reset): what the firmware writes to the serial terminal. */
const TERMINAL_ESCAPES = new RegExp(`${String.fromCharCode(27)}(\\[[0-9;?]*[A-Za-z]|c)`, 'g');
const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';
const BUSYBOX = '/usr/bin/busybox';
/** What the initramfs loads before it can reach the host's root and the test disks, in load order. */
const INITRAMFS_MODULES = [
  'drivers/virtio/virtio_ring',
  'drivers/virtio/virtio',
  'drivers/virtio/virtio_pci_modern_dev',
  'drivers/virtio/virtio_pci_legacy_dev',
  'drivers/virtio/virtio_pci',
  'fs/fuse/fuse',
  'fs/fuse/virtiofs',
  'drivers/block/virtio_blk',
];

/** Why the test bed cannot run here, or null when it can. Tests skip with this reason. */
export function vmUnavailableReason(): string | null {
  for (const [tool, hint] of [
    [QEMU, 'qemu-system-x86'],
    [VIRTIOFSD, 'qemu-system-common'],
    [BUSYBOX, 'busybox-static'],
  ] as const) {
    if (tool.startsWith('/') ? !isExecutable(tool) : !onPath(tool))
      return `${tool} is missing (package ${hint})`;
  }
  if (!guestKernel()) return 'no guest kernel in .vm/kernel (scripts/vm-kernel.sh fetches it)';
  if (process.getuid?.() !== 0) return 'the test bed needs root (virtiofsd shares the host root)';
  return null;
}

export interface VmDisk {
  /** A raw image file on the host; the guest sees the disks in order as /dev/vda, /dev/vdb, … */
  path: string;
  readOnly?: boolean;
}

export interface VmRunOptions {
  /** A bash script run as root in the guest, from the project's directory. `modprobe` there finds the guest's
   *  modules; DISKLINE_VM=1 is set. */
  script: string;
  disks?: VmDisk[];
  memoryMiB?: number;
  /** Virtual CPUs (default 1). Under TCG more than one runs as multi-threaded TCG, where Node stopped on V8
   *  internal checks or a segmentation fault about one run in four; with one it ran every time. */
  cpus?: number;
  /** qemu's CPU model (default: guestCpuModel). */
  cpuModel?: string;
  /** A failure guard only: a boot under TCG on a busy machine can be slow. */
  timeoutMs?: number;
  /** Boot a system disk's own initramfs instead of the test bed's: it mounts that system's root, whose init
   *  (vm/booted-init.sh, installed there as /sbin/diskline-booted-init) then runs the script as the test bed's
   *  does. `cmdline` names the root as the system's boot configuration would (root=UUID=…). */
  bootedSystem?: { initrd: string; cmdline: string };
}

export interface VmRunResult {
  /** The script's exit status (125: the host root could not be mounted in the guest). */
  exitCode: number;
  /** What the script printed on the guest's console (kernel messages printed meanwhile included), or
   *  everything the guest printed when the script never started. */
  output: string;
}

/** Boots the guest, runs the script, and resolves when the guest has powered off. */
export async function runInVm(options: VmRunOptions): Promise<VmRunResult> {
  const reason = vmUnavailableReason();
  if (reason) throw new Error(`the test bed cannot run: ${reason}`);
  const kernel = guestKernel() as { image: string; version: string };
  const work = await mkdtemp(join(tmpdir(), 'diskline-vm-'));
  const children: ChildProcess[] = [];
  try {
    // A marker no script prints by accident: it opens the script's output and carries its exit status.
    const marker = `diskline-vm-${randomBytes(8).toString('hex')}`;
    let initramfs: string;
    let cmdline = 'console=ttyS0 quiet panic=-1';
    if (options.bootedSystem) {
      // The script and settings wait in the work folder, which the booted system reaches over the shared root.
      await writeRunFiles(work, options.script, marker);
      initramfs = options.bootedSystem.initrd;
      cmdline = `${options.bootedSystem.cmdline} ${cmdline} init=/sbin/diskline-booted-init diskline.run=${work}`;
    } else {
      initramfs = await buildInitramfs(work, kernel.version, options.script, marker);
    }
    const socket = join(work, 'virtiofs.sock');
    const virtiofsd = spawn(
      VIRTIOFSD,
      [`--socket-path=${socket}`, '-o', 'source=/', '-o', 'cache=auto', '-o', 'sandbox=chroot'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    children.push(virtiofsd);
    await socketAppears(socket, virtiofsd);

    const memory = options.memoryMiB ?? 1024;
    const args = [
      '-machine',
      'q35',
      '-accel',
      // A /dev/kvm can be there and still refuse a guest (nested virtualisation), so KVM is asked for, not guessed.
      process.env.DISKLINE_VM_ACCEL ?? 'tcg',
      '-cpu',
      options.cpuModel ?? process.env.DISKLINE_VM_CPU ?? guestCpuModel,
      '-smp',
      String(options.cpus ?? 1),
      '-m',
      `${memory}M`,
      '-nographic',
      '-no-reboot',
      '-nic',
      'none',
      '-kernel',
      kernel.image,
      '-initrd',
      initramfs,
      '-append',
      cmdline,
      // virtiofs needs the guest's memory shared with virtiofsd.
      '-object',
      `memory-backend-memfd,id=mem,size=${memory}M,share=on`,
      '-numa',
      'node,memdev=mem',
      '-chardev',
      `socket,id=hostroot,path=${socket}`,
      '-device',
      'vhost-user-fs-pci,chardev=hostroot,tag=host',
    ];
    for (const disk of options.disks ?? []) {
      args.push(
        '-drive',
        `file=${disk.path},if=virtio,format=raw,cache=none,aio=threads${disk.readOnly ? ',readonly=on' : ''}`,
      );
    }
    const qemu = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(qemu);
    const output = await collectUntilExit(qemu, options.timeoutMs ?? DEFAULT_GUARD_MS);
    const end = output.match(new RegExp(`\\n${marker} exit (\\d+)\\n`));
    if (!end || end.index === undefined) {
      throw new Error(
        `the guest powered off without its exit status; its console ended with:\n${tail(output)}`,
      );
    }
    // What the script printed: between the start marker and the exit status (the firmware's and the boot's
    // output before it, any kernel messages during it).
    const startLine = `${marker} start\n`;
    const start = output.indexOf(startLine);
    return {
      exitCode: Number(end[1]),
      output: output.slice(start < 0 ? 0 : start + startLine.length, end.index),
    };
  } finally {
    for (const child of children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  }
}

function guestKernel(): { image: string; version: string } | null {
  const boot = join(kernelRoot, 'boot');
  if (!existsSync(boot)) return null;
  const image = readdirSync(boot).find((name) => name.startsWith('vmlinuz-'));
  if (!image) return null;
  const version = image.slice('vmlinuz-'.length);
  if (!existsSync(join(kernelRoot, 'lib', 'modules', version, 'modules.dep'))) return null;
  return { image: join(boot, image), version };
}

async function buildInitramfs(
  work: string,
  version: string,
  script: string,
  marker: string,
): Promise<string> {
  const root = join(work, 'initramfs');
  for (const dir of ['bin', 'lib', 'proc', 'sys', 'dev', 'newroot'])
    await mkdir(join(root, dir), { recursive: true });
  await copyFile(BUSYBOX, join(root, 'bin', 'busybox'));
  await copyFile(join(projectRoot, 'vm', 'guest-init.sh'), join(root, 'init'));
  const modules = join(kernelRoot, 'lib', 'modules', version, 'kernel');
  for (const module of INITRAMFS_MODULES) {
    await copyFile(join(modules, `${module}.ko`), join(root, 'lib', `${basename(module)}.ko`));
  }
  await writeFile(
    join(root, 'lib', 'load-order'),
    INITRAMFS_MODULES.map((module) => basename(module)).join('\n'),
  );
  await writeRunFiles(root, script, marker);
  await run('chmod', ['0755', join(root, 'init')]);
  const image = join(work, 'initramfs.cpio');
  await run('/bin/sh', [
    '-c',
    `cd "$1" && find . | "$2" cpio -o -H newc > "$3" 2>/dev/null`,
    'sh',
    root,
    BUSYBOX,
    image,
  ]);
  return image;
}

/** The settings and the script the guest's init runs (in the initramfs, or in a folder a booted system reads). */
async function writeRunFiles(root: string, script: string, marker: string): Promise<void> {
  const guestPath = [
    join(projectRoot, 'node_modules', '.bin'),
    '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  ];
  await writeFile(
    join(root, 'run-settings.sh'),
    [
      `KERNEL_ROOT=${shellQuote(kernelRoot)}`,
      `PROJECT=${shellQuote(projectRoot)}`,
      `GUEST_PATH=${shellQuote(guestPath.join(':'))}`,
      `MARKER=${marker}`,
      '',
    ].join('\n'),
  );
  // The guest's modules live in the host's unpacked kernel, reached through the shared root.
  const preamble =
    'modprobe() { command modprobe -d "$DISKLINE_VM_KERNEL_ROOT" "$@"; }\nexport -f modprobe\n';
  await writeFile(join(root, 'script.sh'), preamble + script);
}

/** Resolves once virtiofsd has created its socket (it does so before it accepts the guest). */
function socketAppears(socket: string, virtiofsd: ChildProcess): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    let stderr = '';
    virtiofsd.stderr?.on('data', (data: Buffer) => {
      stderr += data.toString();
    });
    const watcher = watch(dirname(socket), () => {
      if (existsSync(socket)) done();
    });
    const onExit = (code: number | null) => {
      watcher.close();
      reject(new Error(`virtiofsd exited (${code}) before the guest could start: ${stderr.trim()}`));
    };
    const done = () => {
      watcher.close();
      virtiofsd.off('exit', onExit);
      resolvePromise();
    };
    virtiofsd.once('exit', onExit);
    if (existsSync(socket)) done();
  });
}

function collectUntilExit(qemu: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const chunks: Buffer[] = [];
    qemu.stdout?.on('data', (data: Buffer) => chunks.push(data));
    qemu.stderr?.on('data', (data: Buffer) => chunks.push(data));
    const guard = setTimeout(() => {
      qemu.kill('SIGKILL');
      reject(
        new Error(
          `the guest ran past ${timeoutMs} ms; its console ended with:\n${tail(Buffer.concat(chunks).toString())}`,
        ),
      );
    }, timeoutMs);
    qemu.once('error', (error) => {
      clearTimeout(guard);
      reject(error);
    });
    qemu.once('close', () => {
      clearTimeout(guard);
      // The firmware clears the serial terminal with escape sequences; tests read plain lines.
      resolvePromise(Buffer.concat(chunks).toString().replace(/\r\n?/g, '\n').replace(TERMINAL_ESCAPES, ''));
    });
  });
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (data: Buffer) => {
      stderr += data.toString();
    });
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolvePromise() : reject(new Error(`${command} failed (${code}): ${stderr.trim()}`)),
    );
  });
}

function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n');
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '').split(':').some((dir) => dir && isExecutable(join(dir, tool)));
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
