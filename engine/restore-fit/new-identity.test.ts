// --new-identity: the restored disk gets new GUIDs and UUIDs, and the restored system's fstab, GRUB
// configuration (root file system and ESP) name the new ones — no old identifier is left where it looked.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runBackup } from '../jobs/backup.ts';
import type { JobContext } from '../jobs/manager.ts';
import { runRestore } from '../jobs/restore.ts';
import { Repository } from '../repository/repository.ts';
import { buildTestDisk } from '../testing/disk.ts';
import { checkFilesystem, withMount } from '../testing/filesystems.ts';
import { MiB } from '../testing/image.ts';
import { attachLoop, withLoop } from '../testing/loop.ts';
import { loopUnavailableReason, missingToolReason, runTool } from '../testing/tools.ts';
import { replaceIdentifiers } from './new-identity.ts';

const ESP = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const PASSWORD = 'new identity passphrase, long enough';
const skip: string | false =
  loopUnavailableReason() ?? missingToolReason('sgdisk', 'tune2fs', 'mcopy', 'mtype', 'blkid') ?? false;
const context: JobContext = { id: 'test', signal: new AbortController().signal, progress: () => undefined };
let dir = '';
const savedPassword = process.env.DISKLINE_PASSWORD;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'diskline-identity-test-'));
  process.env.DISKLINE_PASSWORD = PASSWORD;
});
after(async () => {
  if (savedPassword === undefined) delete process.env.DISKLINE_PASSWORD;
  else process.env.DISKLINE_PASSWORD = savedPassword;
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function ids(device: string): Promise<{ uuid: string; partuuid: string }> {
  const value = async (tag: string) =>
    (await runTool('blkid', ['-p', '-o', 'value', '-s', tag, device])).stdout.trim();
  return { uuid: await value('UUID'), partuuid: await value('PART_ENTRY_UUID') };
}

test('replaceIdentifiers keeps the case each file wrote an identifier in', () => {
  const changes = [{ what: 'fs', from: 'ABCD-1234', to: 'FFFF-0000' }];
  assert.equal(
    replaceIdentifiers('UUID=abcd-1234 /boot/efi\nsearch ABCD-1234', changes),
    'UUID=ffff-0000 /boot/efi\nsearch FFFF-0000',
  );
});

test('a restore with a new identity changes every GUID and UUID and fixes fstab and GRUB to match', {
  skip,
}, async () => {
  const disk = await buildTestDisk(join(dir, 'source.img'), {
    size: 256 * MiB,
    table: 'gpt',
    partitions: [
      { size: 64 * MiB, type: ESP, filesystem: 'fat32', fill: { files: 3 } },
      { filesystem: 'ext4', fill: { files: 10 } },
    ],
  });
  // A system's references to its own disk, written with the identifiers the disk has.
  const old = await withLoop(disk.image, async (loop) => {
    const esp = await ids(loop.partitions[0]!);
    const root = await ids(loop.partitions[1]!);
    await withMount(loop.partitions[1]!, 'ext4', async (mounted) => {
      await mkdir(join(mounted, 'etc'), { recursive: true });
      await mkdir(join(mounted, 'boot/grub'), { recursive: true });
      await writeFile(
        join(mounted, 'etc/fstab'),
        `UUID=${root.uuid} / ext4 errors=remount-ro 0 1\nUUID=${esp.uuid} /boot/efi vfat umask=0077 0 1\nPARTUUID=${root.partuuid} /mnt/again ext4 noauto 0 0\n`,
      );
      await writeFile(
        join(mounted, 'boot/grub/grub.cfg'),
        `search --no-floppy --fs-uuid --set=root ${root.uuid}\nlinux /boot/vmlinuz root=UUID=${root.uuid} ro\n`,
      );
    });
    await runTool('mmd', ['-i', loop.partitions[0]!, '::/EFI', '::/EFI/debian'], {
      env: { MTOOLS_SKIP_CHECK: '1' },
    });
    await runTool('mcopy', ['-i', loop.partitions[0]!, '-', '::/EFI/debian/grub.cfg'], {
      input: `search.fs_uuid ${root.uuid} root hd0,gpt2\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n`,
      env: { MTOOLS_SKIP_CHECK: '1' },
    });
    const diskGuid = /Disk identifier \(GUID\): (\S+)/.exec(
      (await runTool('sgdisk', ['-p', disk.image])).stdout,
    )![1]!;
    return { esp, root, diskGuid };
  });
  const repoPath = join(dir, 'repo');
  await (await Repository.init(repoPath, { password: PASSWORD, scrypt: { N: 1024, r: 8, p: 1 } })).close();
  const backup = await runBackup(
    { source: disk.image, repo: repoPath, container: undefined, volume: null },
    context,
    () => undefined,
  );
  const target = join(dir, 'clone.img');
  const result = await runRestore(
    { repo: repoPath, point: String(backup.point), to: target, newIdentity: true },
    context,
  );
  const identity = result.identity as { changes: { what: string }[]; fixedFiles: string[] };
  assert.deepEqual(identity.fixedFiles.sort(), [
    'partition 1: EFI/debian/grub.cfg',
    'partition 2: boot/grub/grub.cfg',
    'partition 2: etc/fstab',
  ]);

  assert.match((await runTool('sgdisk', ['-v', target])).stdout, /No problems found/);
  const diskGuid = /Disk identifier \(GUID\): (\S+)/.exec(
    (await runTool('sgdisk', ['-p', target])).stdout,
  )![1]!;
  assert.notEqual(diskGuid, old.diskGuid);
  const loop = await attachLoop(target);
  try {
    const esp = await ids(loop.partitions[0]!);
    const root = await ids(loop.partitions[1]!);
    for (const [now, was] of [
      [esp.uuid, old.esp.uuid],
      [esp.partuuid, old.esp.partuuid],
      [root.uuid, old.root.uuid],
      [root.partuuid, old.root.partuuid],
    ]) {
      assert.notEqual(now, was);
    }
    await checkFilesystem(loop.partitions[0]!, 'fat32');
    await checkFilesystem(loop.partitions[1]!, 'ext4');
    await withMount(
      loop.partitions[1]!,
      'ext4',
      async (mounted) => {
        const { readFile } = await import('node:fs/promises');
        const fstab = await readFile(join(mounted, 'etc/fstab'), 'utf8');
        assert.equal(
          fstab,
          `UUID=${root.uuid} / ext4 errors=remount-ro 0 1\nUUID=${esp.uuid} /boot/efi vfat umask=0077 0 1\nPARTUUID=${root.partuuid} /mnt/again ext4 noauto 0 0\n`,
        );
        const grub = await readFile(join(mounted, 'boot/grub/grub.cfg'), 'utf8');
        assert.ok(grub.includes(root.uuid) && !grub.includes(old.root.uuid), grub);
      },
      { readOnly: true },
    );
    const espGrub = (
      await runTool('mtype', ['-i', loop.partitions[0]!, '::/EFI/debian/grub.cfg'], {
        env: { MTOOLS_SKIP_CHECK: '1' },
      })
    ).stdout;
    assert.ok(espGrub.includes(`search.fs_uuid ${root.uuid} `), espGrub);
  } finally {
    await loop.detach();
  }
});
