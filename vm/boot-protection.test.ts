// The boot setup's local-top script, run in the test bed's guest as the initramfs would run it: each partition
// listed by PARTUUID gets a linear target named diskline-<name>, which holds the partition so nothing mounts it
// directly, and the file system mounts from the target. The real reboot is vm/reboot-protection.test.ts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { runInVm, vmUnavailableReason } from './harness.ts';

const execFileAsync = promisify(execFile);
const unavailable = vmUnavailableReason();
const dir = await mkdtemp(join(tmpdir(), 'diskline-vm-boot-'));
after(() => rm(dir, { recursive: true, force: true }));

test('the boot script stacks a linear target over each protected partition, and the partition mounts only through it', {
  skip: unavailable ?? false,
}, async () => {
  const disk = join(dir, 'system.img');
  await writeFile(disk, Buffer.alloc(0));
  await truncate(disk, 64 << 20);
  await execFileAsync('/bin/sh', ['-c', `printf 'label: gpt\\n,24M\\n,\\n' | sfdisk -q "${disk}"`]);
  const { stdout } = await execFileAsync('sfdisk', ['--part-uuid', disk, '2']);
  const partUuid = stdout.trim().toLowerCase();
  const { exitCode, output } = await runInVm({
    disks: [{ path: disk }],
    script: `set -euo pipefail
modprobe dm-mod
mkfs.ext4 -q /dev/vda2
echo "PARTUUID=${partUuid} vda2" > /tmp/protected.conf
echo "PARTUUID=00000000-0000-0000-0000-000000000000 gone" >> /tmp/protected.conf
DISKLINE_PROTECTED_CONF=/tmp/protected.conf sh engine/device-mapper/boot/stack-protected.sh 2>&1
echo "table: $(dmsetup table diskline-vda2)"
echo "vda2 is $(cat /sys/class/block/vda2/dev)"
mkdir -p /tmp/direct /tmp/through
if mount /dev/vda2 /tmp/direct 2>/dev/null; then echo "direct mount: allowed"; umount /tmp/direct; else echo "direct mount: refused"; fi
mount /dev/mapper/diskline-vda2 /tmp/through && echo "mounted through the target" && umount /tmp/through
echo "vda1 untouched: $(ls /sys/class/block/vda1/holders | wc -l) holders"
# Run again (a second local-top pass must not fail or stack twice).
DISKLINE_PROTECTED_CONF=/tmp/protected.conf sh engine/device-mapper/boot/stack-protected.sh 2>/dev/null
echo "targets: $(dmsetup ls | cut -f1 | tr '\\n' ' ')"
`,
  });
  assert.equal(exitCode, 0, output);
  const number = output.match(/^vda2 is (\d+:\d+)$/m)?.[1];
  assert.ok(number, output);
  assert.match(output, new RegExp(`^table: 0 \\d+ linear ${number} 0$`, 'm'));
  assert.match(output, /^direct mount: refused$/m, 'the target holds the partition');
  assert.match(output, /^mounted through the target$/m);
  assert.match(output, /^vda1 untouched: 0 holders$/m);
  assert.match(output, /protected partition PARTUUID=0{8}-.* is not there; left as it is/);
  assert.match(output, /^targets: diskline-vda2 $/m);
});
