// diskline protection / protect / unprotect through the engine, against real partitioned loop disks (one with a
// partition mounted) and a scratch system root the engine's boot setup is pointed at: the status of a disk
// nobody uses says the tap; every refusal exits 3, says why, and leaves the system root and the initramfs as
// they were; protecting a disk in use records just its partition in use and installs the boot hook, and
// unprotecting it takes everything away again.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { DiskProtection } from '../../../protocol/protection.ts';
import {
  ControlledWork,
  controlledRunners,
  startTestDaemon,
  type TestDaemon,
} from '../../api/testing/daemon.ts';
import { attachSystemDisk } from '../../device-mapper/testing/system-disk.ts';
import { buildTestDisk } from '../../testing/disk.ts';
import { attachLoop, type LoopDevice } from '../../testing/loop.ts';
import { loopUnavailableReason } from '../../testing/tools.ts';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../../bin/diskline', import.meta.url));
const unavailable = loopUnavailableReason();
const options = { skip: unavailable ?? false };

let dir: string;
let systemRoot: string;
let disk: LoopDevice;
let spare: LoopDevice;
let mounted: string;
let daemon: TestDaemon;
let initramfsUpdates = 0;

before(async () => {
  if (unavailable) return;
  dir = await mkdtemp(join(tmpdir(), 'diskline-protect-cli-'));
  disk = await attachSystemDisk(dir);
  mounted = join(dir, 'p2');
  await mkdir(mounted);
  await run('mount', [disk.partitions[1]!, mounted]);
  const spareImage = await buildTestDisk(join(dir, 'spare.img'), {
    size: 16 << 20,
    table: 'gpt',
    partitions: [{ filesystem: 'ext4' }],
  });
  spare = await attachLoop(spareImage.image);
  // What the initramfs-tools package lays out.
  systemRoot = join(dir, 'root');
  await mkdir(join(systemRoot, 'etc/initramfs-tools/hooks'), { recursive: true });
  await mkdir(join(systemRoot, 'etc/initramfs-tools/scripts/local-top'), { recursive: true });
  daemon = await startTestDaemon(
    controlledRunners(new ControlledWork()),
    {},
    {
      protectionSystem: {
        root: systemRoot,
        updateInitramfs: async () => {
          initramfsUpdates++;
        },
      },
    },
  );
});

after(async () => {
  if (unavailable) return;
  await daemon?.close();
  await run('umount', [mounted]).catch(() => undefined);
  await disk?.detach();
  await spare?.detach();
  await rm(dir, { recursive: true, force: true });
});

/** Runs the CLI against the test daemon (or, with `env`, however that says); never throws on an exit code. */
async function diskline(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await run(cli, args, {
      env: {
        ...process.env,
        DISKLINE_SOCKET: daemon.socket,
        DISKLINE_STATE_DIR: join(dir, 'cli-state'),
        ...env,
      },
    });
    return { status: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { status: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

async function systemFiles(): Promise<string[]> {
  return (await readdir(systemRoot, { recursive: true })).sort();
}

async function partUuidOf(partition: string): Promise<string> {
  const { stdout } = await run('blkid', ['-p', '-s', 'PART_ENTRY_UUID', '-o', 'value', partition]);
  return stdout.trim();
}

test(
  'a disk nobody uses is protected by the tap; a disk with a partition mounted needs protecting',
  options,
  async () => {
    const idle = await diskline(['protection', spare.device, '--json']);
    assert.equal(idle.status, 0, idle.stderr);
    const [spareState] = JSON.parse(idle.stdout) as DiskProtection[];
    assert.equal(spareState?.disk, spare.device);
    assert.equal(spareState?.kind, 'tap');
    assert.match(spareState!.detail, /not in use: attach it through the tap/);
    assert.equal(spareState?.canProtect, false);
    assert.equal(spareState?.afterRestart, null);

    const busy = await diskline(['protection', disk.device, '--json']);
    const [diskState] = JSON.parse(busy.stdout) as DiskProtection[];
    assert.equal(diskState?.kind, 'unprotected');
    assert.ok(
      diskState?.detail.startsWith(`${disk.partitions[1]} is in use and not protected`),
      diskState?.detail,
    );
    assert.equal(diskState?.canProtect, true);
    assert.equal(diskState?.canUnprotect, false);
    assert.deepEqual(
      diskState?.volumes.map((volume) => [volume.device, volume.kind, volume.inUse]),
      [
        [disk.partitions[0], 'unprotected', false],
        [disk.partitions[1], 'unprotected', true],
        [disk.partitions[2], 'unprotected', false],
      ],
    );

    const missing = await diskline(['protection', '/dev/no-such-disk']);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /\/dev\/no-such-disk is not there/);
  },
);

test(
  'protect refuses, with nothing changed: a disk not there, no or a wrong confirmation, the repository disk',
  options,
  async () => {
    const before = await systemFiles();
    const refusals: [string[], RegExp][] = [
      [
        ['protect', '/dev/no-such-disk', '--confirm', '/dev/no-such-disk'],
        /\/dev\/no-such-disk is not there/,
      ],
      [['protect', disk.device], new RegExp(`confirm by naming it \\(--confirm ${disk.device}\\)`)],
      [['protect', disk.device, '--confirm', disk.partitions[1]!], /changes how this machine boots/],
      [['protect', disk.partitions[1]!, '--confirm', disk.device], /changes how this machine boots/],
      [['unprotect', disk.device, '--confirm', disk.device], /is not protected/],
      // A repository on the mounted partition: the disk would hold its own backups.
      [
        ['protect', disk.device, '--confirm', disk.device, '--repo', join(mounted, 'repo')],
        /the disk that holds the repository/,
      ],
      // Nothing of the spare disk is in use: the tap is the way, not the boot setup.
      [['protect', spare.device, '--confirm', spare.device], /nothing on .* is in use/],
    ];
    for (const [args, message] of refusals) {
      const answer = await diskline(args);
      assert.equal(answer.status, 3, `${args.join(' ')}: ${answer.stderr}`);
      assert.match(answer.stderr, message, args.join(' '));
      assert.match(answer.stderr, /nothing was changed/, args.join(' '));
    }
    // A repository the engine knows by name refuses as well, without being named on the command line.
    daemon.engine.state.config.repositories.home = join(mounted, 'repo');
    try {
      const answer = await diskline(['protect', disk.partitions[0]!, '--confirm', disk.partitions[0]!]);
      assert.equal(answer.status, 3, answer.stderr);
      assert.match(answer.stderr, /holds the repository .*p2\/repo/);
    } finally {
      delete daemon.engine.state.config.repositories.home;
    }
    const usage = await diskline(['protect', '--confirm', disk.device]);
    assert.equal(usage.status, 2);
    assert.deepEqual(await systemFiles(), before);
    assert.equal(initramfsUpdates, 0);
  },
);

test('an engine hosted by the CLI itself refuses a missing confirmation the same way', options, async () => {
  const hostedRoot = join(dir, 'hosted-root');
  await mkdir(join(hostedRoot, 'etc/initramfs-tools'), { recursive: true });
  const answer = await diskline(['protect', disk.device, '--confirm', 'sda'], {
    DISKLINE_SOCKET: join(dir, 'no-daemon.sock'),
    DISKLINE_SYSTEM_ROOT: hostedRoot,
  });
  assert.equal(answer.status, 3, answer.stderr);
  assert.match(answer.stderr, /confirm by naming it/);
  assert.deepEqual(await readdir(hostedRoot, { recursive: true }), ['etc', 'etc/initramfs-tools']);
});

test(
  'protecting a disk in use records its partition in use and installs the boot hook; unprotecting removes it all',
  options,
  async () => {
    const before = await systemFiles();
    const protectedNow = await diskline(['protect', disk.device, '--confirm', disk.device, '--json']);
    assert.equal(protectedNow.status, 0, protectedNow.stderr);
    const [state] = JSON.parse(protectedNow.stdout) as DiskProtection[];
    assert.equal(state?.kind, 'needs-restart');
    assert.equal(state?.canUnprotect, true);
    assert.equal(state?.canProtect, false);
    assert.deepEqual(
      state?.volumes.map((volume) => volume.protectedAtBoot),
      [false, true, false],
    );
    assert.match(
      state!.afterRestart!,
      new RegExp(`after a restart ${disk.partitions[1]} is mounted through a linear device-mapper target`),
    );
    const list = await readFile(join(systemRoot, 'etc/diskline/protected.conf'), 'utf8');
    assert.deepEqual(
      list.match(/^PARTUUID=\S+/gm),
      [`PARTUUID=${await partUuidOf(disk.partitions[1]!)}`],
      'only the partition in use is protected',
    );
    for (const script of ['hooks/diskline', 'scripts/local-top/diskline']) {
      const text = await readFile(join(systemRoot, 'etc/initramfs-tools', script), 'utf8');
      assert.match(text, /^#!\/bin\/sh/);
    }
    assert.equal(initramfsUpdates, 1);

    const shown = await diskline(['protection', disk.device]);
    assert.match(
      shown.stdout,
      new RegExp(`^${disk.device}  needs-restart  protected from the next restart on`, 'm'),
    );
    assert.match(shown.stdout, /^ {2}after a restart: /m);

    const wrong = await diskline(['unprotect', disk.device, '--confirm', disk.partitions[1]!]);
    assert.equal(wrong.status, 3);
    assert.equal(await readFile(join(systemRoot, 'etc/diskline/protected.conf'), 'utf8'), list);

    const undone = await diskline(['unprotect', disk.device, '--confirm', disk.device, '--json']);
    assert.equal(undone.status, 0, undone.stderr);
    assert.equal((JSON.parse(undone.stdout) as DiskProtection[])[0]?.kind, 'unprotected');
    assert.deepEqual(await systemFiles(), before, 'nothing of the boot setup is left');
    assert.equal(initramfsUpdates, 2);
  },
);
