// The boot check of a restored system disk: would it boot on a new machine? UEFI needs an EFI system partition
// with a loader at the fallback path \EFI\BOOT\BOOTX64.EFI (a new machine's firmware has no boot entry for the
// disk); BIOS needs boot code in the MBR and, for GRUB, its core image (in a BIOS-boot partition on GPT, in the
// gap after the MBR otherwise). Then the restored system must find itself: every fstab entry must lead to a
// partition of this disk, and the kernel and initramfs its boot configuration names must exist. Problems are
// reported before anyone reboots; the one safe fix (copying the installed loader to the fallback path, adding
// files only) is offered and applied on request.
import { openReader } from '../device/open.ts';
import { readPartitionTable } from '../partition/read.ts';
import type { PartitionEntry } from '../partition/types.ts';
import { probeVolume, type VolumeFiles, withVolumeFiles } from '../volume-files/files.ts';
import {
  type FstabEntry,
  namesDevice,
  parseFstab,
  parseGrubEntries,
  parseLoaderEntry,
  resolveDeviceName,
  type VolumeIdentity,
} from './references.ts';

const ESP_GPT = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const BIOS_BOOT_GPT = '21686148-6449-6E6F-744E-656564454649';
const FALLBACK = 'EFI/BOOT/BOOTX64.EFI';
/** Loaders a distribution installs, in the order the fallback copy prefers them (shim first: Secure Boot). */
const PREFERRED_LOADERS = ['shimx64.efi', 'grubx64.efi', 'systemd-bootx64.efi'];
const LINUX_FILESYSTEMS = new Set(['ext2', 'ext3', 'ext4', 'btrfs', 'xfs']);

export interface FallbackLoaderFix {
  kind: 'copy-fallback-loader';
  /** The ESP's partition number. */
  partition: number;
  /** Files to copy, ESP paths: the loader becomes BOOTX64.EFI, its companions (grubx64.efi, grub.cfg) keep their names. */
  copies: { from: string; to: string }[];
}

export interface BootProblem {
  severity: 'error' | 'warning';
  message: string;
  fix?: FallbackLoaderFix;
}

export interface BootReport {
  disk: string;
  table: 'gpt' | 'mbr' | 'none';
  uefi: { esp: number | null; loaders: string[]; fallback: boolean };
  bios: { bootCode: boolean; grub: boolean; coreImage: boolean | null };
  /** Partitions holding a root file system (an /etc/fstab). */
  roots: number[];
  /** What was looked at, one line each. */
  checked: string[];
  problems: BootProblem[];
  /** No error: as far as the disk shows, it boots. */
  bootable: boolean;
}

const isEsp = (p: PartitionEntry) => p.type.toUpperCase() === ESP_GPT || p.type === '0xef';
const nonZero = (bytes: Buffer) => bytes.some((b) => b !== 0);

async function volumeIdentities(
  disk: string,
  partitions: PartitionEntry[],
  table: 'gpt' | 'mbr' | 'none',
  diskId?: string,
) {
  const volumes: VolumeIdentity[] = [];
  for (const p of partitions) {
    const probed = await probeVolume(disk, p.start, p.size).catch(() => ({
      type: null,
      uuid: null,
      label: null,
    }));
    volumes.push({
      index: p.index,
      ...probed,
      partuuid:
        table === 'gpt'
          ? (p.uuid ?? null)
          : table === 'mbr' && diskId
            ? `${diskId}-${p.index.toString(16).padStart(2, '0')}`
            : null,
      partlabel: p.name ?? null,
    });
  }
  return volumes;
}

/** Checks the disk (image or device) at `disk`; reads only. */
export async function checkBoot(disk: string): Promise<BootReport> {
  const reader = await openReader(disk);
  let table: Awaited<ReturnType<typeof readPartitionTable>>;
  let sector0: Buffer;
  let gap: Buffer;
  const biosBoot: { present: boolean; filled: boolean } = { present: false, filled: false };
  try {
    table = await readPartitionTable(reader);
    sector0 = await reader.read(0, 512);
    gap = await reader.read(512, 512);
    const biosPartition = table.partitions.find((p) => p.type.toUpperCase() === BIOS_BOOT_GPT);
    if (biosPartition) {
      biosBoot.present = true;
      biosBoot.filled = nonZero(await reader.read(biosPartition.start, Math.min(biosPartition.size, 4096)));
    }
  } finally {
    await reader.close();
  }
  const problems: BootProblem[] = [];
  const checked: string[] = [];
  const error = (message: string, fix?: FallbackLoaderFix) =>
    problems.push({ severity: 'error', message, ...(fix ? { fix } : {}) });
  const warning = (message: string) => problems.push({ severity: 'warning', message });
  const partitions = table.partitions;
  const volumes = await volumeIdentities(disk, partitions, table.kind, table.diskId);
  const withFiles = <T>(index: number, body: (files: VolumeFiles | null) => Promise<T>) => {
    const p = partitions.find((entry) => entry.index === index)!;
    return withVolumeFiles(disk, p.start, p.size, {}, body);
  };

  // BIOS: boot code in the MBR, and GRUB's core image where its boot code looks for it.
  const bootCode = table.kind !== 'none' && nonZero(sector0.subarray(0, 440));
  const grub = sector0.includes(Buffer.from('GRUB '));
  let coreImage: boolean | null = null;
  if (grub) {
    coreImage = table.kind === 'gpt' ? biosBoot.filled : nonZero(gap);
    checked.push(
      `MBR holds GRUB's boot code; its core image ${coreImage ? 'is' : 'is not'} ${table.kind === 'gpt' ? 'in the BIOS-boot partition' : 'after the MBR'}`,
    );
    if (!coreImage) {
      error(
        table.kind === 'gpt'
          ? biosBoot.present
            ? "the BIOS-boot partition is empty: GRUB's boot code in the MBR has no core image to load (reinstall GRUB for BIOS: grub-install --target=i386-pc)"
            : "GRUB's boot code is in the MBR but the GPT disk has no BIOS-boot partition for its core image"
          : "GRUB's boot code is in the MBR but the sectors after it that hold its core image are empty",
      );
    }
  } else if (bootCode) checked.push('MBR holds boot code');

  // UEFI: an ESP with the fallback loader.
  const esp = partitions.find(isEsp) ?? null;
  const loaders: string[] = [];
  let fallback = false;
  if (esp) {
    await withFiles(esp.index, async (files) => {
      if (files?.type !== 'vfat') {
        error(`the EFI system partition (partition ${esp.index}) holds no FAT file system`);
        return;
      }
      for (const dir of (await files.list('EFI')) ?? []) {
        for (const name of (await files.list(`EFI/${dir}`)) ?? []) {
          if (!/\.efi$/i.test(name)) continue;
          const content = await files.read(`EFI/${dir}/${name}`);
          if (content && content.length > 0 && content.subarray(0, 2).toString('latin1') === 'MZ')
            loaders.push(`EFI/${dir}/${name}`);
        }
      }
      fallback = loaders.some((path) => path.toUpperCase() === FALLBACK);
      checked.push(`ESP (partition ${esp.index}): ${loaders.length ? loaders.join(', ') : 'no EFI loader'}`);
      if (fallback) return;
      const installed = loaders.filter((path) => !path.toUpperCase().startsWith('EFI/BOOT/'));
      const pick =
        PREFERRED_LOADERS.map((name) =>
          installed.find((path) => path.toLowerCase().endsWith(`/${name}`)),
        ).find(Boolean) ?? installed.find((path) => !/fallback|mmx64|fbx64/i.test(path));
      if (!pick) {
        error(
          `the EFI system partition (partition ${esp.index}) holds no EFI loader${bootCode ? '' : ' and the MBR holds no boot code: nothing would boot this disk'}`,
        );
        return;
      }
      // The loader's companions go with it: shim loads grubx64.efi (and mmx64.efi) from its own directory, and a
      // distribution's GRUB reads grub.cfg from there.
      const dir = pick.slice(0, pick.lastIndexOf('/'));
      const copies = [{ from: pick, to: FALLBACK }];
      for (const name of (await files.list(dir)) ?? []) {
        const path = `${dir}/${name}`;
        if (path === pick || /^(fbx64|fallback)/i.test(name) || /\.csv$/i.test(name)) continue;
        if (/\.(efi|cfg)$/i.test(name)) copies.push({ from: path, to: `EFI/BOOT/${name}` });
      }
      error(
        `no loader at the fallback path \\EFI\\BOOT\\BOOTX64.EFI on partition ${esp.index}: a new machine's firmware has no boot entry for ${pick}; the safe fix copies it there`,
        { kind: 'copy-fallback-loader', partition: esp.index, copies },
      );
    });
    // systemd-boot entries name kernels on the ESP.
    await withFiles(esp.index, async (files) => {
      if (!files) return;
      for (const name of (await files.list('loader/entries')) ?? []) {
        const entry = parseLoaderEntry(
          ((await files.read(`loader/entries/${name}`)) ?? Buffer.alloc(0)).toString('utf8'),
        );
        for (const path of [entry.kernel, ...entry.initrds].filter((p): p is string => p !== null)) {
          if (!(await files.read(path)))
            error(`boot entry loader/entries/${name} names ${path}, which is not on the ESP`);
          else checked.push(`boot entry ${name}: ${path} present`);
        }
        if (entry.rootArgument) checkRootArgument(entry.rootArgument, `boot entry ${name}`);
      }
    });
  }
  if (!esp && !bootCode)
    error('nothing would boot this disk: it has no EFI system partition and no boot code in the MBR');

  function checkRootArgument(argument: string, where: string) {
    const resolved = resolveDeviceName(argument, volumes);
    if (resolved.state === 'found')
      checked.push(`${where}: root=${argument} is partition ${resolved.volume.index}`);
    else if (resolved.state === 'missing')
      error(`${where} boots with root=${argument}, which is no partition of this disk`);
    else warning(`${where} names the root as ${argument}, a kernel name that may differ on another machine`);
  }

  // The systems on the disk: their fstab and GRUB configuration.
  const roots: number[] = [];
  for (const volume of volumes) {
    if (!volume.type || !LINUX_FILESYSTEMS.has(volume.type)) continue;
    const found = await withFiles(volume.index, async (files) => {
      if (!files) return null;
      const fstab = await files.read('etc/fstab');
      const grubCfg = (await files.read('boot/grub/grub.cfg')) ?? (await files.read('grub/grub.cfg'));
      return {
        fstab: fstab?.toString('utf8') ?? null,
        grubCfg: grubCfg?.toString('utf8') ?? null,
      };
    });
    if (!found) continue;
    if (found.fstab !== null) {
      roots.push(volume.index);
      checkFstab(parseFstab(found.fstab), volume.index);
    }
    if (found.grubCfg !== null) await checkGrub(found.grubCfg, volume.index);
  }
  // The ESP's own grub.cfg (a distribution's stub) searches for the file system that holds the real one.
  if (esp) {
    await withFiles(esp.index, async (files) => {
      if (!files) return;
      for (const dir of (await files.list('EFI')) ?? []) {
        const stub = await files.read(`EFI/${dir}/grub.cfg`);
        if (!stub) continue;
        const uuid = /search(?:\.fs_uuid\s+|\b.*--fs-uuid.*?\s)([0-9a-fA-F-]{8,})/.exec(
          stub.toString('utf8'),
        )?.[1];
        if (!uuid) continue;
        const resolved = resolveDeviceName(`UUID=${uuid}`, volumes);
        if (resolved.state === 'found')
          checked.push(`EFI/${dir}/grub.cfg finds its file system (partition ${resolved.volume.index})`);
        else error(`EFI/${dir}/grub.cfg searches for file system ${uuid}, which is not on this disk`);
      }
    });
  }
  if (roots.length === 0)
    checked.push('no partition holds an /etc/fstab: not a Linux system disk, or its root is encrypted');

  function checkFstab(entries: FstabEntry[], rootIndex: number) {
    for (const entry of entries) {
      if (!namesDevice(entry)) continue;
      const optional = entry.options.includes('nofail') || entry.options.includes('noauto');
      const resolved = resolveDeviceName(entry.spec, volumes);
      const where = `fstab (partition ${rootIndex}) line ${entry.line}, ${entry.mountPoint}`;
      if (resolved.state === 'found')
        checked.push(`${where}: ${entry.spec} is partition ${resolved.volume.index}`);
      else if (resolved.state === 'unknown')
        warning(
          `${where} names ${entry.spec}, a kernel name that may differ on another machine (or a device not on this disk)`,
        );
      else if (optional) warning(`${where}: ${entry.spec} is not on this disk (the entry is nofail/noauto)`);
      else error(`${where}: ${entry.spec} is not on this disk; the system would stop at boot waiting for it`);
    }
  }

  async function checkGrub(text: string, holder: number) {
    const entries = parseGrubEntries(text);
    for (const [i, entry] of entries.entries()) {
      if (!entry.kernel) continue;
      const where = `GRUB entry '${entry.title}' (partition ${holder})`;
      const severityOf = i === 0 ? error : warning;
      // Paths are relative to the file system GRUB's search chose, else to the one holding grub.cfg.
      const searched = entry.searchUuid ? resolveDeviceName(`UUID=${entry.searchUuid}`, volumes) : null;
      if (searched && searched.state !== 'found') {
        severityOf(`${where} searches for file system ${entry.searchUuid}, which is not on this disk`);
        continue;
      }
      const fsIndex = searched?.state === 'found' ? searched.volume.index : holder;
      for (const path of [entry.kernel, ...entry.initrds]) {
        const present = await withFiles(fsIndex, async (files) =>
          files ? (await files.read(path)) !== null : false,
        );
        if (present) checked.push(`${where}: ${path} present on partition ${fsIndex}`);
        else severityOf(`${where} boots ${path}, which is not on partition ${fsIndex}`);
      }
      if (entry.rootArgument) checkRootArgument(entry.rootArgument, where);
    }
  }

  return {
    disk,
    table: table.kind,
    uefi: { esp: esp?.index ?? null, loaders, fallback },
    bios: { bootCode, grub, coreImage },
    roots,
    checked,
    problems,
    bootable: !problems.some((p) => p.severity === 'error'),
  };
}

/** Applies the report's safe fixes (adding files only); returns what was done. */
export async function applySafeFixes(disk: string, report: BootReport): Promise<string[]> {
  const done: string[] = [];
  const reader = await openReader(disk);
  const table = await readPartitionTable(reader).finally(() => reader.close());
  for (const problem of report.problems) {
    const fix = problem.fix;
    if (fix?.kind !== 'copy-fallback-loader') continue;
    const p = table.partitions.find((entry) => entry.index === fix.partition);
    if (!p) continue;
    await withVolumeFiles(disk, p.start, p.size, { writable: true }, async (files) => {
      if (!files) return;
      for (const copy of fix.copies) {
        // Adds, never replaces: a file already at the fallback path stays as it is.
        if (await files.read(copy.to)) continue;
        const content = await files.read(copy.from);
        if (!content) continue;
        await files.write(copy.to, content);
        done.push(`copied ${copy.from} to ${copy.to} on partition ${fix.partition}`);
      }
    });
  }
  return done;
}

/** The report for people: what was checked, then the problems, then the verdict. */
export function describeBootReport(report: BootReport): string[] {
  const lines = report.checked.map((line) => `  ok: ${line}`);
  for (const problem of report.problems) {
    lines.push(
      `  ${problem.severity}: ${problem.message}${problem.fix ? ' (safe fix: diskline boot-check --fix)' : ''}`,
    );
  }
  lines.push(
    report.bootable
      ? `${report.disk}: nothing found that would stop it booting`
      : `${report.disk}: would not boot as it is`,
  );
  return lines;
}

/** The boot check after a restore: the report when the disk holds a system (an ESP, boot code or a root), else
 * null. A check that cannot run does not fail the restore: its reason is the report's only problem. */
export async function checkRestoredSystem(disk: string, name = disk): Promise<BootReport | null> {
  try {
    const report = { ...(await checkBoot(disk)), disk: name };
    const system = report.uefi.esp !== null || report.bios.bootCode || report.roots.length > 0;
    return system ? report : null;
  } catch (error) {
    return {
      disk: name,
      table: 'none',
      uefi: { esp: null, loaders: [], fallback: false },
      bios: { bootCode: false, grub: false, coreImage: null },
      roots: [],
      checked: [],
      problems: [
        { severity: 'warning', message: `the boot check could not run: ${(error as Error).message}` },
      ],
      bootable: false,
    };
  }
}
