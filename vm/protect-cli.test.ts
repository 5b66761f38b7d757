// `diskline protect` through the CLI in the test bed's guest, against a partition in use: a wrong confirmation is
// refused with nothing installed; protecting installs the initramfs hook and local-top script in the system root
// (a scratch one, DISKLINE_SYSTEM_ROOT) and rebuilds the initramfs (the guest's update-initramfs is a stand-in
// that records its call: the guest has no initramfs-tools); running the installed local-top script as the
// initramfs would stacks the target, and `diskline protection` then says device-mapper.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import type { DiskProtection } from '../protocol/protection.ts';
import { runInVm, vmUnavailableReason } from './harness.ts';

const execFileAsync = promisify(execFile);
// Three engine starts in the guest: minutes under TCG.
const unavailable =
  (process.env.DISKLINE_VM_SLOW !== '1' &&
    'protecting through the CLI in the guest takes minutes under TCG: set DISKLINE_VM_SLOW=1 to run it') ||
  vmUnavailableReason();
const dir = await mkdtemp(join(tmpdir(), 'diskline-vm-protect-'));
after(() => rm(dir, { recursive: true, force: true }));

test('diskline protect installs the boot hook for a partition in use, and the installed script protects it', {
  skip: unavailable ?? false,
  timeout: 900_000,
}, async () => {
  const disk = join(dir, 'system.img');
  await writeFile(disk, Buffer.alloc(0));
  await truncate(disk, 64 << 20);
  await execFileAsync('/bin/sh', ['-c', `printf 'label: gpt\\n,24M\\n,\\n' | sfdisk -q "${disk}"`]);
  const { stdout } = await execFileAsync('sfdisk', ['--part-uuid', disk, '2']);
  const partUuid = stdout.trim().toLowerCase();
  const { exitCode, output } = await runInVm({
    disks: [{ path: disk }],
    timeoutMs: 900_000,
    script: `set -euo pipefail
export NODE_COMPILE_CACHE=/tmp/node-compile-cache
export DISKLINE_SYSTEM_ROOT=/tmp/sys DISKLINE_SOCKET=/tmp/no-daemon.sock DISKLINE_STATE_DIR=/tmp/state
mkdir -p /tmp/sys/etc/initramfs-tools/hooks /tmp/sys/etc/initramfs-tools/scripts/local-top /tmp/bin /tmp/mnt
printf '#!/bin/sh\\necho "update-initramfs $*" >> /tmp/initramfs-rebuilt\\n' > /tmp/bin/update-initramfs
chmod 0755 /tmp/bin/update-initramfs
export PATH=/tmp/bin:$PATH
mkfs.ext4 -q /dev/vda2
mount /dev/vda2 /tmp/mnt
set +e
node engine/cli/main.ts protect /dev/vda2 --confirm /dev/vda 2>&1
echo "wrong confirmation: exit $?, files $(find /tmp/sys -type f | wc -l)"
set -e
node engine/cli/main.ts protect /dev/vda --confirm /dev/vda --json > /tmp/protect.json
echo "protect: $(cat /tmp/protect.json)"
echo "list: $(grep '^PARTUUID' /tmp/sys/etc/diskline/protected.conf)"
for f in hooks/diskline scripts/local-top/diskline; do
  echo "installed $f: $(stat -c %a /tmp/sys/etc/initramfs-tools/$f) $(head -1 /tmp/sys/etc/initramfs-tools/$f)"
done
echo "rebuilt: $(cat /tmp/initramfs-rebuilt)"
# As the initramfs would, before anything mounts the partition.
umount /tmp/mnt
modprobe dm-mod
DISKLINE_PROTECTED_CONF=/tmp/sys/etc/diskline/protected.conf sh /tmp/sys/etc/initramfs-tools/scripts/local-top/diskline
mount /dev/mapper/diskline-vda2 /tmp/mnt
echo "protection: $(node engine/cli/main.ts protection /dev/vda --json)"
`,
  });
  assert.equal(exitCode, 0, output);
  assert.match(output, /confirm by naming it \(--confirm \/dev\/vda2\); nothing was changed/);
  assert.match(output, /^wrong confirmation: exit 3, files 0$/m);
  const protectedNow = JSON.parse(output.match(/^protect: (.*)$/m)?.[1] ?? 'null') as DiskProtection[];
  assert.equal(protectedNow[0]?.kind, 'needs-restart', output);
  assert.match(
    protectedNow[0]?.afterRestart ?? '',
    /after a restart \/dev\/vda2 is mounted through a linear/,
  );
  assert.match(output, new RegExp(`^list: PARTUUID=${partUuid} vda2$`, 'm'));
  assert.match(output, /^installed hooks\/diskline: 755 #!\/bin\/sh$/m);
  assert.match(output, /^installed scripts\/local-top\/diskline: 755 #!\/bin\/sh$/m);
  assert.match(output, /^rebuilt: update-initramfs -u$/m);
  const after = JSON.parse(output.match(/^protection: (.*)$/m)?.[1] ?? 'null') as DiskProtection[];
  assert.equal(after[0]?.kind, 'device-mapper', output);
  const vda2 = after[0]?.volumes.find((volume) => volume.device === '/dev/vda2');
  assert.equal(vda2?.detail, 'protected: mounted through /dev/mapper/diskline-vda2');
  assert.equal(vda2?.protectedAtBoot, true);
});
