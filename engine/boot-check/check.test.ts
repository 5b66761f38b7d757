// The boot check on a real (small) system disk: GPT with a BIOS-boot partition, an ESP holding a distribution's
// loader, and an ext4 root with fstab, grub.cfg, kernel and initramfs. Each way a restore can fail to boot is
// made on a copy and must be reported; the fallback loader's fix must make the check pass.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, open, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildTestDisk } from '../testing/disk.ts';
import { withMount } from '../testing/filesystems.ts';
import { MiB } from '../testing/image.ts';
import { withLoop } from '../testing/loop.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';
import { applySafeFixes, checkBoot, describeBootReport } from './check.ts';

const ESP = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const BIOS_BOOT = '21686148-6449-6E6F-744E-656564454649';
const mtools = { MTOOLS_SKIP_CHECK: '1' };
const skip: string | false = loopUnavailableReason() ?? missingToolReason('mcopy', 'mdel', 'blkid') ?? false;
let dir = '';
let healthy = '';
/** The loader's bytes: a PE image starts with MZ. */
const loader = Buffer.concat([Buffer.from('MZ'), Buffer.alloc(4094, 7)]);

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'diskline-boot-check-'));
  healthy = join(dir, 'system.img');
  await buildTestDisk(healthy, {
    size: 160 * MiB,
    table: 'gpt',
    partitions: [
      { size: MiB, type: BIOS_BOOT, filesystem: null },
      { size: 48 * MiB, type: ESP, filesystem: 'fat32' },
      { filesystem: 'ext4' },
    ],
  });
  await withLoop(healthy, async (loop) => {
    const [biosBoot, esp, root] = loop.partitions as [string, string, string];
    const value = async (device: string, tag: string) =>
      (await runTool('blkid', ['-p', '-o', 'value', '-s', tag, device])).stdout.trim();
    const rootUuid = await value(root, 'UUID');
    const espUuid = await value(esp, 'UUID');
    // GRUB's core image in the BIOS-boot partition.
    const core = await open(biosBoot, 'r+');
    await core.write(Buffer.alloc(4096, 0x42), 0, 4096, 0);
    await core.close();
    await runTool('mmd', ['-i', esp, '::/EFI', '::/EFI/debian', '::/EFI/BOOT'], { env: mtools });
    for (const path of ['::/EFI/debian/grubx64.efi', '::/EFI/BOOT/BOOTX64.EFI']) {
      await runTool('mcopy', ['-i', esp, '-', path], { input: loader, env: mtools });
    }
    await runTool('mcopy', ['-i', esp, '-', '::/EFI/debian/grub.cfg'], {
      input: `search.fs_uuid ${rootUuid} root hd0,gpt3\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n`,
      env: mtools,
    });
    await withMount(root, 'ext4', async (mounted) => {
      await mkdir(join(mounted, 'etc'));
      await mkdir(join(mounted, 'boot/grub'), { recursive: true });
      await writeFile(
        join(mounted, 'etc/fstab'),
        `# a comment\nUUID=${rootUuid} / ext4 errors=remount-ro 0 1\nUUID=${espUuid} /boot/efi vfat umask=0077 0 1\nproc /proc proc defaults 0 0\n`,
      );
      await writeFile(
        join(mounted, 'boot/grub/grub.cfg'),
        `menuentry 'Debian GNU/Linux' {\n\tsearch --no-floppy --fs-uuid --set=root ${rootUuid}\n\tlinux /boot/vmlinuz-6.1.0 root=UUID=${rootUuid} ro quiet\n\tinitrd /boot/initrd.img-6.1.0\n}\n`,
      );
      await writeFile(join(mounted, 'boot/vmlinuz-6.1.0'), loader);
      await writeFile(join(mounted, 'boot/initrd.img-6.1.0'), 'initramfs');
      // Debian's links at the root: a link out of the volume must resolve inside it.
      await runTool('ln', ['-s', '/boot/vmlinuz-6.1.0', join(mounted, 'vmlinuz')]);
    });
  });
  // GRUB's boot code in the MBR (the protective MBR's code area).
  const mbr = await open(healthy, 'r+');
  const code = Buffer.alloc(440, 0x90);
  code.write('GRUB ', 0x180, 'latin1');
  await mbr.write(code, 0, 440, 0);
  await mbr.close();
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A copy of the healthy disk, changed by `damage` through its partitions. */
async function damaged(name: string, damage: (partitions: string[]) => Promise<void>): Promise<string> {
  const copy = join(dir, `${name}.img`);
  await copyFile(healthy, copy);
  await withLoop(copy, (loop) => damage(loop.partitions));
  return copy;
}

test('a healthy system disk passes: fallback loader, GRUB core image, fstab, kernel and initramfs', {
  skip,
}, async () => {
  const report = await checkBoot(healthy);
  assert.deepEqual(report.problems, [], describeBootReport(report).join('\n'));
  assert.equal(report.bootable, true);
  assert.deepEqual(
    { ...report.uefi, loaders: [...report.uefi.loaders].sort() },
    { esp: 2, loaders: ['EFI/BOOT/BOOTX64.EFI', 'EFI/debian/grubx64.efi'], fallback: true },
  );
  assert.deepEqual(report.bios, { bootCode: true, grub: true, coreImage: true });
  assert.deepEqual(report.roots, [3]);
});

test('a missing fallback loader is an error whose safe fix copies the installed loader and its grub.cfg', {
  skip,
}, async () => {
  const disk = await damaged('no-fallback', async ([, esp]) => {
    await runTool('mdel', ['-i', esp!, '::/EFI/BOOT/BOOTX64.EFI'], { env: mtools });
  });
  const report = await checkBoot(disk);
  assert.equal(report.bootable, false);
  const problem = report.problems.find((p) => p.fix);
  assert.match(problem!.message, /no loader at the fallback path/);
  assert.deepEqual(problem!.fix!.copies, [
    { from: 'EFI/debian/grubx64.efi', to: 'EFI/BOOT/BOOTX64.EFI' },
    { from: 'EFI/debian/grub.cfg', to: 'EFI/BOOT/grub.cfg' },
  ]);
  const done = await applySafeFixes(disk, report);
  assert.equal(done.length, 2);
  const again = await checkBoot(disk);
  assert.equal(again.bootable, true, describeBootReport(again).join('\n'));
});

test('an emptied ESP, a missing kernel, an fstab entry not on the disk and an empty BIOS-boot partition are each reported', {
  skip,
}, async () => {
  const disk = await damaged('broken', async ([biosBoot, esp, root]) => {
    await runTool('mdeltree', ['-i', esp!, '::/EFI'], { env: mtools });
    await withMount(root!, 'ext4', async (mounted) => {
      await unlink(join(mounted, 'boot/vmlinuz-6.1.0'));
      await writeFile(
        join(mounted, 'etc/fstab'),
        'UUID=0000aaaa-0000-4000-8000-000000000000 /home ext4 defaults 0 2\nLABEL=backup /backup ext4 nofail 0 2\n',
        { flag: 'a' },
      );
    });
    const core = await open(biosBoot!, 'r+');
    await core.write(Buffer.alloc(4096), 0, 4096, 0);
    await core.close();
  });
  const report = await checkBoot(disk);
  const messages = report.problems.map((p) => `${p.severity}: ${p.message}`);
  assert.equal(report.bootable, false);
  const expected = [
    /^error: the BIOS-boot partition is empty/,
    /^error: the EFI system partition \(partition 2\) holds no EFI loader/,
    /^error: fstab \(partition 3\) line 5, \/home: UUID=0000aaaa-.* is not on this disk/,
    /^warning: fstab \(partition 3\) line 6, \/backup: LABEL=backup is not on this disk \(the entry is nofail/,
    /^error: GRUB entry 'Debian GNU\/Linux' \(partition 3\) boots \/boot\/vmlinuz-6.1.0, which is not on partition 3/,
  ];
  for (const pattern of expected) {
    assert.ok(
      messages.some((m) => pattern.test(m)),
      `${pattern} in:\n${messages.join('\n')}`,
    );
  }
});

test('diskline boot-check exits 0 for a disk that would boot, 1 for one that would not, and --fix repairs the fallback', {
  skip,
}, async () => {
  const { runCli } = await import('../repository/testing/run-cli.ts');
  const ok = await runCli(['boot-check', healthy, '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).bootable, true);
  const disk = await damaged('cli-no-fallback', async ([, esp]) => {
    await runTool('mdel', ['-i', esp!, '::/EFI/BOOT/BOOTX64.EFI'], { env: mtools });
  });
  const broken = await runCli(['boot-check', disk]);
  assert.equal(broken.status, 1);
  assert.match(
    broken.stdout,
    /error: no loader at the fallback path .*\(safe fix: diskline boot-check --fix\)/,
  );
  const fixed = await runCli(['boot-check', disk, '--fix']);
  assert.equal(fixed.status, 0, fixed.stdout + fixed.stderr);
  assert.match(
    fixed.stdout,
    /^fixed: copied EFI\/debian\/grubx64.efi to EFI\/BOOT\/BOOTX64.EFI on partition 2$/m,
  );
});
