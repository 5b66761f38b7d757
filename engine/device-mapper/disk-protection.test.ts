// Protection per disk against real loop disks and a scratch system root: a whole disk protects each partition
// in use and checks every one before the first change; a disk mounted without a partition table cannot be
// protected at boot and says why; a failed initramfs rebuild puts the boot setup back as it was.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { buildTestDisk } from '../testing/disk.ts';
import { attachLoop, type LoopDevice } from '../testing/loop.ts';
import { loopUnavailableReason } from '../testing/tools.ts';
import { diskProtection, protectDisk, unprotectDisk } from './disk-protection.ts';
import { ProtectionRefused, type ProtectionSystem } from './protection.ts';
import { attachSystemDisk } from './testing/system-disk.ts';

const run = promisify(execFile);
const unavailable = loopUnavailableReason();
const options = { skip: unavailable ?? false };
let dir: string;
let disk: LoopDevice;
let whole: LoopDevice;
const mounts: string[] = [];
let system: ProtectionSystem;
let rebuilds = 0;
let rebuildFails = false;

async function mountAt(device: string, name: string): Promise<string> {
  const point = join(dir, name);
  await mkdir(point);
  await run('mount', [device, point]);
  mounts.push(point);
  return point;
}

before(async () => {
  if (unavailable) return;
  dir = await mkdtemp(join(tmpdir(), 'diskline-disk-protection-'));
  disk = await attachSystemDisk(dir);
  await mountAt(disk.partitions[0]!, 'p1');
  await mountAt(disk.partitions[1]!, 'p2');
  const wholeImage = await buildTestDisk(join(dir, 'whole.img'), {
    size: 16 << 20,
    table: 'none',
    partitions: [{ filesystem: 'ext4' }],
  });
  whole = await attachLoop(wholeImage.image);
  system = {
    root: join(dir, 'root'),
    updateInitramfs: async () => {
      rebuilds++;
      if (rebuildFails) throw new Error('update-initramfs: no space left on /boot');
    },
  };
  await mkdir(join(system.root, 'etc/initramfs-tools/hooks'), { recursive: true });
  await mkdir(join(system.root, 'etc/initramfs-tools/scripts/local-top'), { recursive: true });
});

after(async () => {
  if (unavailable) return;
  for (const point of mounts.reverse()) await run('umount', [point]).catch(() => undefined);
  await disk?.detach();
  await whole?.detach();
  await rm(dir, { recursive: true, force: true });
});

async function systemFiles(): Promise<string[]> {
  return (await readdir(system.root, { recursive: true })).sort();
}

test(
  'a disk mounted without a partition table cannot be protected at boot, and says to use the tap',
  options,
  async () => {
    const idle = await diskProtection(whole.device, null, system);
    assert.equal(idle.kind, 'tap');
    assert.match(idle.detail, /^not in use: attach it through the tap/);
    const point = await mountAt(whole.device, 'whole');
    try {
      const busy = await diskProtection(whole.device, null, system);
      assert.equal(busy.kind, 'cannot');
      assert.match(
        busy.detail,
        /is in use and not a partition \(no PARTUUID\).*attach the disk through the tap/,
      );
      assert.equal(busy.canProtect, false);
      const before = await systemFiles();
      await assert.rejects(
        protectDisk({ device: whole.device, confirm: whole.device, repositories: [] }, system),
        (error: Error) => error instanceof ProtectionRefused && /has no PARTUUID/.test(error.message),
      );
      assert.deepEqual(await systemFiles(), before);
    } finally {
      await run('umount', [point]);
      mounts.pop();
    }
    // Served through the tap, the tap is how it is protected.
    assert.equal((await diskProtection(whole.device, '/dev/loop99', system)).kind, 'tap');
  },
);

test('protecting a disk checks every partition in use before the first change', options, async () => {
  const before = await systemFiles();
  // The store is on the second partition in use: refused, and the first was not protected meanwhile.
  await assert.rejects(
    protectDisk(
      { device: disk.device, confirm: disk.device, repositories: [], storePath: join(dir, 'p2', 'store') },
      system,
    ),
    (error: Error) =>
      error instanceof ProtectionRefused &&
      error.message.startsWith(`the store ${join(dir, 'p2', 'store')} is on ${disk.partitions[1]}`),
  );
  assert.deepEqual(await systemFiles(), before);
  assert.equal(rebuilds, 0);
});

test(
  'a failed initramfs rebuild puts the boot setup back as it was, for protect and for unprotect',
  options,
  async () => {
    const before = await systemFiles();
    rebuildFails = true;
    await assert.rejects(
      protectDisk({ device: disk.device, confirm: disk.device, repositories: [] }, system),
      /rebuilding the initramfs failed \(update-initramfs: no space left on \/boot\): the boot setup was put back/,
    );
    assert.deepEqual(await systemFiles(), before, 'no hook and no list left behind');
    assert.equal((await diskProtection(disk.device, null, system)).kind, 'unprotected');

    rebuildFails = false;
    await protectDisk({ device: disk.device, confirm: disk.device, repositories: [] }, system);
    const state = await diskProtection(disk.device, null, system);
    assert.equal(state.kind, 'needs-restart');
    assert.deepEqual(
      state.volumes.map((volume) => [volume.kind, volume.protectedAtBoot]),
      [
        ['needs-restart', true],
        ['needs-restart', true],
        ['unprotected', false],
      ],
    );
    const listed = await readFile(join(system.root, 'etc/diskline/protected.conf'), 'utf8');
    const protectedFiles = await systemFiles();

    rebuildFails = true;
    await assert.rejects(
      unprotectDisk({ device: disk.device, confirm: disk.device }, system),
      /the boot setup was put back as it was/,
    );
    assert.deepEqual(await systemFiles(), protectedFiles);
    assert.equal(await readFile(join(system.root, 'etc/diskline/protected.conf'), 'utf8'), listed);

    rebuildFails = false;
    await unprotectDisk({ device: disk.device, confirm: disk.device }, system);
    assert.deepEqual(await systemFiles(), before);
  },
);
