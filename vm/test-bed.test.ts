// The test bed itself: a guest boots, loads device-mapper, stacks a snapshot over a virtio disk the way a
// protected disk's table is swapped at a point, and the snapshot keeps the disk's bytes while writes go on.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { runInVm, vmUnavailableReason } from './harness.ts';

const execFileAsync = promisify(execFile);
const unavailable = vmUnavailableReason();
const dir = await mkdtemp(join(tmpdir(), 'diskline-vm-bed-'));
after(() => rm(dir, { recursive: true, force: true }));

test('a dm snapshot swapped in under a live linear target keeps the bytes of the point', {
  skip: unavailable ?? false,
}, async () => {
  const disk = join(dir, 'disk.img');
  const cow = join(dir, 'cow.img');
  const original = randomBytes(8 << 20);
  await writeFile(disk, original);
  await writeFile(cow, Buffer.alloc(0));
  await truncate(cow, 4 << 20);
  const originalSha = createHash('sha256').update(original).digest('hex');

  const { exitCode, output } = await runInVm({
    disks: [{ path: disk }, { path: cow }],
    script: `set -euo pipefail
modprobe dm-snapshot
size=$(blockdev --getsz /dev/vda)
dmsetup create protected --table "0 $size linear /dev/vda 0"
dmsetup create protected-real --table "0 $size linear /dev/vda 0"
dmsetup create protected-point --table "0 $size snapshot /dev/mapper/protected-real /dev/vdb N 8"
dmsetup suspend protected
dmsetup load protected --table "0 $size snapshot-origin /dev/mapper/protected-real"
dmsetup resume protected
head -c 1048576 /dev/urandom | dd of=/dev/mapper/protected bs=64K seek=16 oflag=direct status=none
echo "point $(sha256sum < /dev/mapper/protected-point | cut -d' ' -f1)"
echo "live $(sha256sum < /dev/mapper/protected | cut -d' ' -f1)"
dmsetup remove protected-point
dmsetup remove protected
dmsetup remove protected-real
`,
  });
  assert.equal(exitCode, 0, output);
  const point = output.match(/^point ([0-9a-f]{64})$/m)?.[1];
  const live = output.match(/^live ([0-9a-f]{64})$/m)?.[1];
  assert.equal(point, originalSha, 'the snapshot reads the bytes the disk held at the point');
  const after = await readFile(disk);
  assert.equal(live, createHash('sha256').update(after).digest('hex'), 'the live device is the disk itself');
  assert.notEqual(live, originalSha, 'the write reached the disk');
  assert.deepEqual(after.subarray(0, 16 * 65536), original.subarray(0, 16 * 65536));
});

// Node ran reliably in the guest once it had one virtual CPU (harness.ts says why).
test('the engine runs in the guest and reads a disk as the host does', {
  skip: unavailable ?? false,
}, async () => {
  const image = join(dir, 'ext4.img');
  await writeFile(image, Buffer.alloc(0));
  await truncate(image, 64 << 20);
  await execFileAsync('mkfs.ext4', ['-q', '-F', image]);
  const onHost = JSON.parse(
    (await execFileAsync(process.execPath, ['engine/cli/main.ts', 'inspect', image, '--json'])).stdout,
  );
  const { exitCode, output } = await runInVm({
    disks: [{ path: image, readOnly: true }],
    script: 'echo "inspect $(node engine/cli/main.ts inspect /dev/vda --json | tr -d "\\n")"\n',
  });
  assert.equal(exitCode, 0, output);
  const line = output.match(/^inspect (.*)$/m)?.[1];
  assert.ok(line, output);
  const inGuest = JSON.parse(line);
  assert.equal(inGuest.size, onHost.size);
  assert.equal(inGuest.usedBytes, onHost.usedBytes);
  assert.deepEqual(inGuest.partitions, onHost.partitions);
});
