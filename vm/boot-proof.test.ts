// The boot proof: a small Debian system disk (GRUB for UEFI and BIOS, the cloud kernel, a busybox root) is
// backed up, restored onto a smaller disk (its root shrunk) and a bigger one (its root grown), and each restored
// disk boots under OVMF and SeaBIOS until its init has checked its data and printed the marker. The smaller one
// goes through the restore drill, as a user would ask for it. A restore whose ESP was emptied is reported by the
// boot check, and nothing boots it.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { InProcessClient } from '../engine/api/client.ts';
import { openEngine } from '../engine/api/host.ts';
import { checkBoot } from '../engine/boot-check/check.ts';
import { bootInVm, bootUnavailableReason } from '../engine/boot-check/vm-boot.ts';
import type { JobContext } from '../engine/jobs/manager.ts';
import { runRestore } from '../engine/jobs/restore.ts';
import type { FitPlan } from '../engine/partition/fit-layout.ts';
import { runTool } from '../engine/testing/tools.ts';
import {
  BOOT_MARKER,
  BOOT_MARKER_PATTERN,
  type BootImage,
  bootImage,
  bootImageUnavailableReason,
} from './boot-image.ts';

const MiB = 1024 * 1024;
const skip: string | false =
  bootUnavailableReason('uefi') ?? bootUnavailableReason('bios') ?? bootImageUnavailableReason() ?? false;
const context: JobContext = {
  id: 'boot-proof',
  signal: new AbortController().signal,
  progress: () => undefined,
};
let dir = '';
let image: BootImage;
let repo = '';
let point = '';
const savedPassword = process.env.DISKLINE_PASSWORD;

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'diskline-boot-proof-'));
  process.env.DISKLINE_PASSWORD = 'boot proof passphrase, long enough';
  const started = performance.now();
  image = await bootImage();
  console.log(`# boot image ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${image.path}`);
  const engine = await openEngine({ stateDir: join(dir, 'state'), schedules: false });
  const client = new InProcessClient(engine);
  try {
    repo = join(dir, 'repo');
    await client.call('repo.init', { repo });
    const backup = await engine.jobs.waitFor(
      (await client.call('backup.start', { source: image.path, repo })).id,
    );
    assert.equal(backup.state, 'succeeded', backup.error ?? '');
    point = String(backup.result?.point);
  } finally {
    await client.close();
  }
});
after(async () => {
  if (savedPassword === undefined) delete process.env.DISKLINE_PASSWORD;
  else process.env.DISKLINE_PASSWORD = savedPassword;
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('the drill restores the point onto a smaller disk and boots it under UEFI and BIOS', {
  skip,
}, async () => {
  const engine = await openEngine({ stateDir: join(dir, 'drill-state'), schedules: false });
  const client = new InProcessClient(engine);
  try {
    const started = performance.now();
    const job = await engine.jobs.waitFor(
      (
        await client.call('drill.start', {
          repo,
          point,
          boot: { marker: BOOT_MARKER, targetSize: 160 * MiB },
        })
      ).id,
    );
    const detail = String(job.result?.detail ?? job.error);
    console.log(
      `# drill with two boots: ${((performance.now() - started) / 1000).toFixed(0)} s\n${detail.replace(/^/gm, '# ')}`,
    );
    assert.equal(job.state, 'succeeded', detail);
    assert.match(
      detail,
      new RegExp(`^boot: restored onto a ${160 * MiB}-byte scratch disk \\(shrink\\)$`, 'm'),
    );
    assert.match(detail, /^boot \(uefi\): booted in \d+ s$/m);
    assert.match(detail, /^boot \(bios\): booted in \d+ s$/m);
  } finally {
    await client.close();
  }
});

test('a restore onto a bigger disk with --grow boots under UEFI and BIOS', { skip }, async () => {
  const target = join(dir, 'bigger.img');
  const result = await runRestore({ repo, point, to: target, targetSize: 384 * MiB, grow: true }, context);
  const plan = result.plan as FitPlan;
  assert.equal(plan.mode, 'grow');
  assert.equal(plan.partitions[2]!.to.start + plan.partitions[2]!.to.size, 383 * MiB);
  const check = result.bootCheck as Awaited<ReturnType<typeof checkBoot>>;
  assert.equal(check.bootable, true, JSON.stringify(check.problems));
  assert.match((await runTool('sgdisk', ['-v', target])).stdout, /No problems found/);
  for (const firmware of ['uefi', 'bios'] as const) {
    const boot = await bootInVm({ disk: target, firmware, marker: BOOT_MARKER_PATTERN });
    console.log(
      `# bigger disk, ${firmware}: ${boot.booted ? 'booted' : 'not booted'} in ${boot.seconds.toFixed(0)} s`,
    );
    assert.ok(boot.booted, `${firmware}: ${boot.reason}\n${boot.consoleTail}`);
    assert.match(boot.consoleTail, new RegExp(`root=UUID=${image.rootUuid}`));
  }
});

test('a restore whose ESP was emptied is reported by the boot check before any boot', { skip }, async () => {
  const target = join(dir, 'broken.img');
  const result = await runRestore({ repo, point, to: target, targetSize: 160 * MiB }, context);
  assert.equal((result.bootCheck as { bootable: boolean }).bootable, true);
  const plan = result.plan as FitPlan;
  const esp = plan.partitions.find((p) => p.index === 2)!;
  await runTool('mdeltree', ['-i', `${target}@@${esp.to.start}`, '::/EFI'], {
    env: { MTOOLS_SKIP_CHECK: '1' },
  });
  const report = await checkBoot(target);
  assert.equal(report.bootable, false);
  assert.ok(
    report.problems.some((p) => p.severity === 'error' && /holds no EFI loader/.test(p.message)),
    JSON.stringify(report.problems),
  );
});
