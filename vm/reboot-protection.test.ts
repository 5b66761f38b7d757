// The reboot proof of boot-time protection: a small Debian system disk whose initramfs is made by
// initramfs-tools is protected by the engine's protection module (its root partition, by PARTUUID), its initramfs is
// regenerated with the hook (on the host, from the system's own /etc: vm/system-initramfs.ts), and the disk is
// booted again through that initramfs: the root comes up through the
// linear target diskline-vda3 and is mounted from it, and a device-mapper backup swaps a snapshot in under the
// live root and copies it. Then unprotect (on the running system), regenerate, boot again: the hook is gone and the root is
// mounted from the partition itself. The boots are the disk's own kernel and initramfs (qemu's direct kernel
// boot: GRUB is proved by the boot proof), with the test bed's root shared so the engine runs in the booted
// system. Slow under TCG: runs only with DISKLINE_VM_SLOW=1 (docs/test-bed.md).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { runTool } from '../engine/testing/tools.ts';
import { bootImage, bootImageUnavailableReason } from './boot-image.ts';
import { runInVm, vmUnavailableReason } from './harness.ts';
import { systemInitramfs, systemInitramfsUnavailableReason } from './system-initramfs.ts';

const execFileAsync = promisify(execFile);
const STEP_GUARD_MS = 30 * 60_000;
const MiB = 1024 * 1024;
const skip: string | false =
  (process.env.DISKLINE_VM_SLOW !== '1' &&
    'the reboot proof takes minutes under TCG: set DISKLINE_VM_SLOW=1 to run it') ||
  vmUnavailableReason() ||
  bootImageUnavailableReason() ||
  systemInitramfsUnavailableReason() ||
  false;
const dir = await mkdtemp(join(tmpdir(), 'diskline-vm-reboot-'));
after(() => rm(dir, { recursive: true, force: true }));

/** What every run in the protected system's life starts with: the engine's protection module (as the engine
 *  calls it for `diskline protect`), and update-initramfs for the system. */
const prelude = `set -euo pipefail
export NODE_COMPILE_CACHE=/tmp/node-compile-cache
export PATH="$PWD/vm/guest:$PATH" DISKLINE_SYSTEM_ROOT=/run/system
protection() { node vm/guest/protection.ts "$@"; }
requests() { if [ -e /run/system/boot/initramfs-requests ]; then wc -l < /run/system/boot/initramfs-requests; else echo 0; fi; }
root_device() { # major:minor of the device the booted root is mounted from
  awk '$5 == "/" { print $3 }' /run/booted-mountinfo
}
`;

/** The files the boot setup puts into an initramfs. */
async function bootSetupFiles(initrd: string): Promise<string[]> {
  const { stdout } = await runTool('lsinitramfs', [initrd]);
  return stdout.split('\n').filter((line) => /diskline|^usr\/sbin\/dmsetup$/.test(line));
}

const lines = (output: string, pattern: RegExp) =>
  output
    .split('\n')
    .filter((line) => pattern.test(line))
    .join('\n');

test('a protected root comes up through its linear target after a reboot, backs up through device-mapper, and mounts directly once unprotected', {
  skip,
}, async () => {
  const image = await bootImage();
  const system = join(dir, 'system.img');
  await execFileAsync('cp', ['--sparse=always', image.path, system]);
  const copy = join(dir, 'copy.img');
  await writeFile(copy, Buffer.alloc(0));
  await truncate(copy, 256 * MiB);
  const disks = [{ path: system }, { path: copy }];
  const layout = JSON.parse((await runTool('sfdisk', ['--json', system])).stdout).partitiontable;
  const rootOffset = (layout.partitions[2].start as number) * 512;
  const cmdline = `root=UUID=${image.rootUuid}`;
  const timings: string[] = [];
  const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      timings.push(`${what}: ${((performance.now() - started) / 1000).toFixed(0)} s`);
    }
  };

  // 1. The system becomes an initramfs-tools system (as a Debian install is), then is protected.
  const install = await timed('protect and regenerate (test bed)', () =>
    runInVm({
      disks,
      // A failure guard: each step takes minutes under TCG, several times that on a busy host.
      timeoutMs: STEP_GUARD_MS,
      script: `${prelude}
modprobe ext4
modprobe dm-mod
mkdir -p /run/system
mount /dev/vda3 /run/system
mkdir -p /run/system/etc/initramfs-tools/hooks /run/system/etc/initramfs-tools/scripts /run/system/etc/initramfs-tools/conf.d /run/system/run /run/system/host /run/system/root
sed 's/^MODULES=.*/MODULES=list/' /etc/initramfs-tools/initramfs.conf > /run/system/etc/initramfs-tools/initramfs.conf
printf '%s\\n' virtio_pci virtio_blk ext4 virtiofs > /run/system/etc/initramfs-tools/modules
cp vm/booted-init.sh /run/system/sbin/diskline-booted-init
before=$(requests)
protection protect /dev/vda3
grep -v '^#' /run/system/etc/diskline/protected.conf
echo "update-initramfs asked for: $(( $(requests) - before ))"
umount /run/system
`,
    }),
  );
  assert.equal(install.exitCode, 0, install.output);
  console.log(lines(install.output, /^(update|PARTUUID|\/dev)/));
  assert.match(install.output, /^\/dev\/vda3: protected from the next restart on/m);
  assert.match(install.output, /^PARTUUID=[0-9a-f-]{36} vda3$/m);
  assert.match(install.output, /^update-initramfs asked for: 1$/m);
  const protectedInitrd = join(dir, 'protected.initrd');
  await timed('mkinitramfs (host)', () => systemInitramfs(system, rootOffset, protectedInitrd));
  const setupFiles = await bootSetupFiles(protectedInitrd);
  console.log(`# in the protected initramfs: ${setupFiles.join(' ')}`);
  for (const file of ['etc/diskline/protected.conf', 'scripts/local-top/diskline', 'usr/sbin/dmsetup'])
    assert.ok(setupFiles.includes(file), `${file} is in the initramfs`);

  // 2. The reboot: the root through the target; a device-mapper backup of it; then unprotect.
  const protectedBoot = await timed('protected boot, backup, unprotect', () =>
    runInVm({
      disks,
      // A failure guard: each step takes minutes under TCG, several times that on a busy host.
      timeoutMs: STEP_GUARD_MS,
      bootedSystem: { initrd: protectedInitrd, cmdline },
      script: `${prelude}
modprobe dm-snapshot
modprobe loop
mount -t cgroup2 none /sys/fs/cgroup
echo "root from $(root_device); the target is $(cat /sys/block/dm-0/dev) $(cat /sys/block/dm-0/dm/name)"
echo "table: $(dmsetup table diskline-vda3)"
echo "vda3 is $(cat /sys/class/block/vda3/dev), held by $(ls /sys/class/block/vda3/holders)"
echo "protection: $(protection status /dev/vda)"
export DISKLINE_MEMORY_STORE_DIR=/run
node vm/guest/dm-backup.ts --source /dev/mapper/diskline-vda3 --store memory:$((32 << 20)) --out /dev/vdb
echo "after the backup: $(dmsetup table diskline-vda3)"
e2fsck -fn /dev/vdb > /tmp/fsck.log 2>&1 && echo "copy: fsck clean" || cat /tmp/fsck.log
mkdir -p /tmp/copy && mount -o ro /dev/vdb /tmp/copy
(cd /tmp/copy/var/lib/proof && sha256sum -c data.sha256) && cmp /tmp/copy/var/lib/proof/data.bin /run/system/var/lib/proof/data.bin && echo "copy: data equal"
umount /tmp/copy
mount -o remount,rw /run/system
before=$(requests)
protection unprotect /dev/vda3
echo "left: $(ls /run/system/etc/initramfs-tools/hooks /run/system/etc/initramfs-tools/scripts/local-top 2>/dev/null | grep -c diskline || true) hook files, list $(test -e /run/system/etc/diskline/protected.conf && echo kept || echo gone)"
echo "update-initramfs asked for: $(( $(requests) - before ))"
mount -o remount,ro /run/system
`,
    }),
  );
  console.log(lines(protectedBoot.output, /^(root|table|vda3|protection|\{|after|copy|left|update)/));
  assert.equal(protectedBoot.exitCode, 0, protectedBoot.output);
  const target = protectedBoot.output.match(/^root from (\d+:\d+); the target is (\d+:\d+) (\S+)$/m);
  assert.ok(target, protectedBoot.output);
  assert.equal(target[1], target[2], 'the root is mounted from the mapped device');
  assert.equal(target[3], 'diskline-vda3');
  const vda3 = protectedBoot.output.match(/^vda3 is (\d+:\d+), held by dm-0$/m);
  assert.ok(vda3, protectedBoot.output);
  assert.match(protectedBoot.output, new RegExp(`^table: 0 \\d+ linear ${vda3[1]} 0$`, 'm'));
  const statuses = JSON.parse(protectedBoot.output.match(/^protection: (.*)$/m)?.[1] ?? '[]') as {
    device: string;
    kind: string;
    detail: string;
  }[];
  const root = statuses.find((status) => status.device === '/dev/vda3');
  assert.ok(root, JSON.stringify(statuses));
  assert.equal(root.kind, 'device-mapper');
  assert.match(root.detail, /mounted through \/dev\/mapper\/diskline-vda3/);
  assert.match(protectedBoot.output, /"event":"point"/);
  assert.match(protectedBoot.output, /"event":"done"/);
  assert.match(protectedBoot.output, new RegExp(`^after the backup: 0 \\d+ linear ${vda3[1]} 0$`, 'm'));
  assert.match(protectedBoot.output, /^copy: fsck clean$/m);
  assert.match(protectedBoot.output, /^copy: data equal$/m);
  assert.match(protectedBoot.output, /^left: 0 hook files, list gone$/m);
  assert.match(protectedBoot.output, /^update-initramfs asked for: 1$/m);
  const plainInitrd = join(dir, 'plain.initrd');
  await timed('mkinitramfs (host)', () => systemInitramfs(system, rootOffset, plainInitrd));
  assert.deepEqual(
    (await bootSetupFiles(plainInitrd)).filter((file) => file.includes('diskline')),
    [],
    'the boot setup is gone from the initramfs',
  );

  // 3. Unprotected: no target, the root from the partition itself.
  const plainBoot = await timed('unprotected boot', () =>
    runInVm({
      disks,
      // A failure guard: each step takes minutes under TCG, several times that on a busy host.
      timeoutMs: STEP_GUARD_MS,
      bootedSystem: { initrd: plainInitrd, cmdline },
      script: `${prelude}
echo "root from $(root_device); vda3 is $(cat /sys/class/block/vda3/dev)"
echo "targets: $(dmsetup ls 2>/dev/null | grep -c diskline || true)"
echo "data: $(cd /run/system/var/lib/proof && sha256sum -c data.sha256)"
`,
    }),
  );
  console.log(lines(plainBoot.output, /^(root|targets|data)/));
  assert.equal(plainBoot.exitCode, 0, plainBoot.output);
  const plain = plainBoot.output.match(/^root from (\d+:\d+); vda3 is (\d+:\d+)$/m);
  assert.ok(plain, plainBoot.output);
  assert.equal(plain[1], plain[2], 'the root is mounted from the partition itself');
  assert.match(plainBoot.output, /^targets: 0$/m);
  assert.match(plainBoot.output, /^data: data.bin: OK$/m);
  console.log(`# ${timings.join('; ')}`);
});
