// Gives a restored disk a new identity, for a clone that runs beside its original: new disk and partition GUIDs
// (or an MBR disk signature), new file-system UUIDs (or FAT/NTFS serials), and the references to them the
// restored systems hold fixed — fstab, crypttab, GRUB's configuration and default command line, systemd-boot
// entries, the kernel command line file. What it cannot see is said: firmware boot entries live in the
// machine's NVRAM, and an initramfs may carry the old UUIDs (a resume device) until it is rebuilt.
import { randomBytes, randomUUID } from 'node:crypto';
import { openReader, openWriter } from '../device/open.ts';
import { readPartitionTable } from '../partition/read.ts';
import { rewritePartitionTable } from '../partition/rewrite-table.ts';
import { withVolumeFiles } from '../volume-files/files.ts';
import { runTool, withLoopRange } from '../volume-files/loop-range.ts';

export interface IdentityChange {
  what: string;
  from: string;
  to: string;
}

export interface NewIdentityResult {
  changes: IdentityChange[];
  /** Files whose references were rewritten, as "partition N: path". */
  fixedFiles: string[];
  warnings: string[];
}

/** Files a restored Linux system (or its ESP) names disks, partitions and file systems in. */
const REFERENCE_FILES = [
  'etc/fstab',
  'etc/crypttab',
  'etc/default/grub',
  'etc/kernel/cmdline',
  'etc/initramfs-tools/conf.d/resume',
  'boot/grub/grub.cfg',
  'grub/grub.cfg',
  'boot/grub2/grub.cfg',
  'grub2/grub.cfg',
];
/** Directories whose every file is a boot entry or loader configuration. */
const REFERENCE_DIRS = ['boot/loader/entries', 'loader/entries'];

async function blkid(device: string, tag: string): Promise<string | null> {
  const { stdout } = await runTool('blkid', ['-p', '-o', 'value', '-s', tag, device], { okExits: [2] });
  return stdout.trim() || null;
}

/** A new volume serial in a FAT boot sector (and a FAT32's backup boot sector); returns it as blkid shows it. */
async function newFatSerial(device: string): Promise<string> {
  const writer = await openWriter(device, { minSize: 512 });
  try {
    const boot = Buffer.from(await writer.read(0, 512));
    const fat32 = boot.readUInt16LE(22) === 0;
    const at = fat32 ? 67 : 39;
    const serial = randomBytes(4);
    serial.copy(boot, at);
    await writer.write(0, boot);
    const backupSector = fat32 ? boot.readUInt16LE(50) : 0;
    if (backupSector > 0 && backupSector < 32) {
      const bytesPerSector = boot.readUInt16LE(11);
      const backup = Buffer.from(await writer.read(backupSector * bytesPerSector, 512));
      serial.copy(backup, at);
      await writer.write(backupSector * bytesPerSector, backup);
    }
    await writer.flush();
    const hex = Buffer.from(serial).reverse().toString('hex').toUpperCase();
    return `${hex.slice(0, 4)}-${hex.slice(4)}`;
  } finally {
    await writer.close();
  }
}

/** Gives the file system on `device` a new UUID; returns [old, new] as blkid shows them, or null when kept. */
async function newFilesystemUuid(device: string): Promise<{ type: string; from: string; to: string } | null> {
  const type = await blkid(device, 'TYPE');
  const from = await blkid(device, 'UUID');
  if (!type || !from) return null;
  switch (type) {
    case 'ext2':
    case 'ext3':
    case 'ext4':
      await runTool('e2fsck', ['-f', '-y', device], { okExits: [1] });
      await runTool('tune2fs', ['-U', randomUUID(), device]);
      break;
    case 'vfat':
      await newFatSerial(device);
      break;
    case 'ntfs':
      await runTool('ntfslabel', ['--new-serial', device]);
      break;
    case 'btrfs':
      await runTool('btrfstune', ['-f', '-u', device], { input: 'y\n' });
      break;
    case 'xfs':
      await runTool('xfs_admin', ['-U', 'generate', device]);
      break;
    case 'swap':
      await runTool('swaplabel', ['-U', randomUUID(), device]);
      break;
    default:
      return null;
  }
  const to = await blkid(device, 'UUID');
  return to && to !== from ? { type, from, to } : null;
}

/** Replaces every old identifier in `text` by its new one, keeping the case the file wrote it in. */
export function replaceIdentifiers(text: string, changes: IdentityChange[]): string {
  let result = text;
  for (const change of changes) {
    const pattern = new RegExp(change.from.replace(/[-]/g, '\\-'), 'gi');
    result = result.replace(pattern, (found) =>
      found === found.toLowerCase() ? change.to.toLowerCase() : change.to.toUpperCase(),
    );
  }
  return result;
}

export async function giveNewIdentity(target: string): Promise<NewIdentityResult> {
  const changes: IdentityChange[] = [];
  const fixedFiles: string[] = [];
  const warnings: string[] = [];
  const reader = await openReader(target);
  const table = await readPartitionTable(reader).finally(() => reader.close());
  if (table.kind !== 'none') {
    const writer = await openWriter(target, { minSize: 0 });
    try {
      const rewritten = await rewritePartitionTable(writer, {
        table: table.kind,
        sectorSize: table.sectorSize,
        partitions: [],
        newIdentity: true,
      });
      if (rewritten.diskId) {
        changes.push({ what: 'disk identifier', ...rewritten.diskId });
        if (table.kind === 'mbr') {
          // An MBR partition's PARTUUID is the disk signature and its number.
          for (const p of table.partitions) {
            const suffix = `-${p.index.toString(16).padStart(2, '0')}`;
            changes.push({
              what: `partition ${p.index} PARTUUID`,
              from: `${rewritten.diskId.from}${suffix}`,
              to: `${rewritten.diskId.to}${suffix}`,
            });
          }
        }
      }
      for (const p of rewritten.partitionIds) {
        changes.push({ what: `partition ${p.index} PARTUUID`, from: p.from, to: p.to });
      }
    } finally {
      await writer.close();
    }
  }
  for (const p of table.partitions) {
    const changed = await withLoopRange(target, p.start, p.size, newFilesystemUuid);
    if (changed)
      changes.push({ what: `partition ${p.index} ${changed.type} UUID`, from: changed.from, to: changed.to });
  }
  for (const p of table.partitions) {
    await withVolumeFiles(target, p.start, p.size, { writable: true }, async (files) => {
      if (!files) return;
      const names = [...REFERENCE_FILES];
      for (const dir of REFERENCE_DIRS) {
        for (const name of (await files.list(dir)) ?? []) names.push(`${dir}/${name}`);
      }
      for (const name of (await files.list('EFI')) ?? []) names.push(`EFI/${name}/grub.cfg`);
      for (const name of names) {
        const content = await files.read(name);
        if (!content) continue;
        const text = content.toString('utf8');
        const fixed = replaceIdentifiers(text, changes);
        if (fixed === text) continue;
        await files.write(name, Buffer.from(fixed, 'utf8'));
        fixedFiles.push(`partition ${p.index}: ${name}`);
      }
    });
  }
  warnings.push(
    "firmware boot entries (in the machine's NVRAM, not on the disk) that name the old partition GUIDs must be made again (efibootmgr); the fallback loader \\EFI\\BOOT\\BOOTX64.EFI boots without one",
  );
  if (fixedFiles.some((file) => /etc\/fstab|crypttab|resume/.test(file))) {
    warnings.push(
      'an initramfs may still name the old UUIDs (a resume device): run update-initramfs -u in the clone',
    );
  }
  return { changes, fixedFiles, warnings };
}
