// The device-mapper provider, proved in the test bed's guest: a dm snapshot is swapped in under a live mapped
// device, the snapshot core copies it while writers go on, and the copy is the disk at the point.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { runInVm, vmUnavailableReason } from './harness.ts';

const execFileAsync = promisify(execFile);
const unavailable = vmUnavailableReason();
const dir = await mkdtemp(join(tmpdir(), 'diskline-vm-dm-'));
after(() => rm(dir, { recursive: true, force: true }));

const WRITER = 'vm/guest/stamped-writer.py';

/** The guest's common start: device-mapper and loop loaded, cgroup v2 with the io controller, a writers' cgroup, the disk under a linear target. */
const prelude = `set -euo pipefail
modprobe dm-snapshot
modprobe loop
mount -t cgroup2 none /sys/fs/cgroup
echo +io > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/writers
export DISKLINE_MEMORY_STORE_DIR=/run
size=$(blockdev --getsz /dev/vda)
dmsetup create prot --table "0 $size linear /dev/vda 0"
in_writers() { echo $BASHPID > /sys/fs/cgroup/writers/cgroup.procs; exec "$@"; }
writes_made() { grep -c '^progress' /tmp/writer.log || true; }
`;

function events(output: string): Record<string, unknown>[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{"event"'))
    .map((line) => JSON.parse(line));
}

async function verifyPrefix(image: string, initial: string, seed: string, count: number): Promise<number> {
  const { stdout } = await execFileAsync('python3', [WRITER, 'verify', image, initial, seed, String(count)]);
  const match = stdout.match(/^prefix (\d+)$/m);
  assert.ok(match, stdout);
  return Number(match[1]);
}

test('an O_DSYNC writer running through a backup: the copy is the disk after a prefix of its writes', {
  skip: unavailable ?? false,
}, async () => {
  const disk = join(dir, 'stamped.img');
  const initial = join(dir, 'stamped.initial');
  const copy = join(dir, 'stamped.copy');
  await writeFile(disk, randomBytes(16 << 20));
  await copyFile(disk, initial);
  await writeFile(copy, Buffer.alloc(0));
  await truncate(copy, 16 << 20);
  const seed = randomBytes(4).toString('hex');
  const { exitCode, output } = await runInVm({
    disks: [{ path: disk }, { path: copy }],
    script: `${prelude}
(in_writers python3 ${WRITER} write /dev/mapper/prot ${seed} /tmp/stop) > /tmp/writer.log 2>&1 &
writer=$!
until [ "$(writes_made)" -ge 1 ]; do sleep 0.1; done
node vm/guest/dm-backup.ts --source /dev/mapper/prot --store memory:$((16 << 20)) --out /dev/vdb
before=$(writes_made)
until [ "$(writes_made)" -ge $((before + 1)) ]; do sleep 0.1; done
touch /tmp/stop
wait $writer
tail -n1 /tmp/writer.log
echo "tables: $(dmsetup ls | tr '\\n' ' ')"
dmsetup remove prot
`,
  });
  assert.equal(exitCode, 0, output);
  const done = events(output).find((event) => event.event === 'done');
  assert.ok(done, output);
  const wrote = output.match(/^wrote (\d+) maxlatency_ms (\d+)$/m);
  assert.ok(wrote, output);
  const count = Number(wrote[1]);
  assert.match(output, /^tables: prot\s*$/m, 'nothing of the snapshot is left behind');
  const prefix = await verifyPrefix(copy, initial, seed, count);
  assert.ok(prefix >= 1 && prefix < count, `the point fell inside the writes (prefix ${prefix} of ${count})`);
  assert.equal(await verifyPrefix(disk, initial, seed, count), count, 'every write reached the disk');
});
