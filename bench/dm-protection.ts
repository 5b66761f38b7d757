// What device-mapper protection costs writers, measured with fio inside the test bed's guest (one boot, peers
// interleaved): 4 KiB random writes (QD16, direct) and 1 MiB sequential writes on the raw virtio disk against
// the same disk under the linear target the boot setup stacks (protected, no backup: goal ≥ 95%); then 4 KiB
// O_DSYNC writers' p50/p99 latency on the protected disk with no backup against during a device-mapper backup
// (the copier reading the snapshot, the kernel copying old chunks to a memory store), and the backup's throughput.
// Under TCG the absolute figures are the emulator's; the ratios are what to read.
// Usage: node bench/dm-protection.ts [--seconds 4] [--rounds 2]. Needs what vm/harness.ts needs.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runInVm, vmUnavailableReason } from '../vm/harness.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '4' }, rounds: { type: 'string', default: '2' } },
});
const reason = vmUnavailableReason();
if (reason) {
  console.log(`skipped: ${reason}`);
  process.exit(0);
}
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const dir = await mkdtemp(join(tmpdir(), 'diskline-bench-dm-'));
try {
  const disk = join(dir, 'disk.img');
  const copy = join(dir, 'copy.img');
  for (const path of [disk, copy]) {
    await writeFile(path, Buffer.alloc(0));
    await truncate(path, 256 << 20);
  }
  const fio = (name: string, device: string, extra: string) =>
    `fio --name=${name} --filename=${device} --direct=1 --time_based --runtime=${seconds} --output-format=json ${extra} | ` +
    `python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]["write"]; p=j["clat_ns"].get("percentile",{}); ` +
    `print("RESULT", "${name}", j["iops"], j["bw_bytes"], p.get("50.000000",0)/1e6, p.get("99.000000",0)/1e6)'`;
  const random = '--rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio';
  const sequential = '--rw=write --bs=1M --iodepth=4 --ioengine=libaio';
  const dsync = '--rw=randwrite --bs=4k --iodepth=1 --ioengine=psync --sync=1 --size=64M';
  const lines: string[] = [];
  for (let round = 0; round < rounds; round++) {
    // Interleaved, so a change in the host's load falls on both peers.
    lines.push(fio('raw-random', '/dev/vda', random), fio('linear-random', '/dev/mapper/prot', random));
    lines.push(fio('raw-seq', '/dev/vda', sequential), fio('linear-seq', '/dev/mapper/prot', sequential));
  }
  lines.push(fio('dsync-idle', '/dev/mapper/prot', dsync));
  const { exitCode, output } = await runInVm({
    disks: [{ path: disk }, { path: copy }],
    timeoutMs: 1_800_000,
    script: `set -euo pipefail
modprobe dm-snapshot
modprobe loop
mount -t cgroup2 none /sys/fs/cgroup
export DISKLINE_MEMORY_STORE_DIR=/run NODE_COMPILE_CACHE=/tmp/node-compile-cache
size=$(blockdev --getsz /dev/vda)
dmsetup create prot --table "0 $size linear /dev/vda 0"
${lines.join('\n')}
# During a backup: the writers start once the point is taken and run while the copier reads.
node vm/guest/dm-backup.ts --source /dev/mapper/prot --store memory:$((128 << 20)) --out /dev/vdb > /tmp/backup.log &
backup=$!
until grep -q '"event":"point"' /tmp/backup.log; do sleep 0.05; done
${fio('dsync-backup', '/dev/mapper/prot', dsync)}
wait $backup
cat /tmp/backup.log
dmsetup remove prot
`,
  });
  if (exitCode !== 0) throw new Error(`the guest failed (${exitCode}):\n${output}`);
  const results = new Map<string, number[][]>();
  for (const match of output.matchAll(/^RESULT (\S+) (\S+) (\S+) (\S+) (\S+)$/gm)) {
    const list = results.get(match[1]!) ?? [];
    list.push([Number(match[2]), Number(match[3]), Number(match[4]), Number(match[5])]);
    results.set(match[1]!, list);
  }
  const mean = (name: string, field: number) => {
    const list = results.get(name) ?? [];
    return list.reduce((sum, row) => sum + row[field]!, 0) / Math.max(1, list.length);
  };
  const iopsRatio = mean('linear-random', 0) / mean('raw-random', 0);
  const bwRatio = mean('linear-seq', 1) / mean('raw-seq', 1);
  console.log(
    `4 KiB random write IOPS: raw ${mean('raw-random', 0).toFixed(0)}, protected (linear) ${mean('linear-random', 0).toFixed(0)} — ${(iopsRatio * 100).toFixed(1)}%`,
  );
  console.log(
    `1 MiB sequential write: raw ${(mean('raw-seq', 1) / 2 ** 20).toFixed(1)} MiB/s, protected ${(mean('linear-seq', 1) / 2 ** 20).toFixed(1)} MiB/s — ${(bwRatio * 100).toFixed(1)}%`,
  );
  console.log(
    `4 KiB O_DSYNC writer latency p50/p99: no backup ${mean('dsync-idle', 2).toFixed(2)}/${mean('dsync-idle', 3).toFixed(2)} ms, during a device-mapper backup ${mean('dsync-backup', 2).toFixed(2)}/${mean('dsync-backup', 3).toFixed(2)} ms`,
  );
  const events = output
    .split('\n')
    .filter((line) => line.startsWith('{"event"'))
    .map((line) => JSON.parse(line));
  const point = events.find((event) => event.event === 'point');
  const done = events.find((event) => event.event === 'done');
  if (point && done)
    console.log(
      `backup: ${(done.bytesCopied / 2 ** 20).toFixed(0)} MiB in ${(done.at - point.at).toFixed(1)} s (${(done.bytesCopied / 2 ** 20 / (done.at - point.at)).toFixed(1)} MiB/s) while the writer ran; store peak ${(done.peakStoreBytes / 2 ** 20).toFixed(1)} MiB`,
    );
} finally {
  await rm(dir, { recursive: true, force: true });
}
