// Protect / unprotect against a real partitioned loop disk and a scratch /etc: the boot setup is installed and
// removed cleanly, and every refusal leaves the system as it was.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import type { LoopDevice } from '../testing/loop.ts';
import { loopUnavailableReason } from '../testing/tools.ts';
import {
  ProtectionRefused,
  type ProtectionSystem,
  protect,
  protectionStatus,
  unprotect,
} from './protection.ts';
import { attachSystemDisk } from './testing/system-disk.ts';

const run = promisify(execFile);
const unavailable = loopUnavailableReason();
let dir: string;
let loop: LoopDevice;
let mounted: string;
let system: ProtectionSystem;
let initramfsUpdates = 0;

before(async () => {
  if (unavailable) return;
  dir = await mkdtemp(join(tmpdir(), 'diskline-protect-'));
  loop = await attachSystemDisk(dir);
  mounted = join(dir, 'p2');
  await mkdir(mounted);
  await run('mount', [loop.partitions[1]!, mounted]);
  system = { root: join(dir, 'root'), updateInitramfs: async () => void initramfsUpdates++ };
  // What the initramfs-tools package lays out.
  await mkdir(join(system.root, 'etc/initramfs-tools/hooks'), { recursive: true });
  await mkdir(join(system.root, 'etc/initramfs-tools/scripts/local-top'), { recursive: true });
});

after(async () => {
  if (unavailable) return;
  await run('umount', [mounted]).catch(() => undefined);
  await loop?.detach();
  await rm(dir, { recursive: true, force: true });
});

async function systemFiles(): Promise<string[]> {
  const files = await readdir(system.root, { recursive: true });
  return files.sort();
}

const options = { skip: unavailable ?? false };

test('protecting asks for the disk to be named, and a refusal changes nothing', options, async () => {
  const before = await systemFiles();
  await assert.rejects(
    protect({ device: '/dev/no-such-disk', confirm: '/dev/no-such-disk', repositories: [] }, system),
    (error: Error) => error instanceof ProtectionRefused && /not there/.test(error.message),
  );
  const p1 = loop.partitions[0]!;
  await assert.rejects(
    protect({ device: p1, confirm: undefined, repositories: [] }, system),
    (error: Error) => error instanceof ProtectionRefused && error.message.includes(`--confirm ${p1}`),
  );
  await assert.rejects(
    protect({ device: p1, confirm: loop.partitions[2], repositories: [] }, system),
    ProtectionRefused,
  );
  // A repository on another partition of the same disk: the disk holds its own backups.
  await assert.rejects(
    protect({ device: p1, confirm: p1, repositories: [join(mounted, 'repo')] }, system),
    (error: Error) => error instanceof ProtectionRefused && /holds the repository/.test(error.message),
  );
  // The copy-on-write store on the volume being protected cannot be excluded from a dm snapshot.
  await assert.rejects(
    protect(
      {
        device: loop.partitions[1]!,
        confirm: loop.partitions[1],
        repositories: [],
        storePath: join(mounted, 'store'),
      },
      system,
    ),
    (error: Error) => error instanceof ProtectionRefused && /cannot be excluded/.test(error.message),
  );
  assert.deepEqual(await systemFiles(), before);
  assert.equal(initramfsUpdates, 0);
});

test(
  'protecting a partition installs the boot setup; the status says a restart is needed; unprotecting removes it all',
  options,
  async () => {
    const p2 = loop.partitions[1]!;
    const p3 = loop.partitions[2]!;
    const before = await systemFiles();
    const status = await protect(
      { device: p2, confirm: p2, repositories: [], storePath: join(dir, 'store') },
      system,
    );
    assert.equal(status.kind, 'needs-restart');
    await protect({ device: p3, confirm: p3, repositories: [] }, system);
    const list = await readFile(join(system.root, 'etc/diskline/protected.conf'), 'utf8');
    const { stdout: partUuid } = await run('blkid', ['-p', '-s', 'PART_ENTRY_UUID', '-o', 'value', p2]);
    assert.match(list, new RegExp(`^PARTUUID=${partUuid.trim()} `, 'm'));
    assert.equal(list.match(/^PARTUUID=/gm)?.length, 2);
    for (const script of ['hooks/diskline', 'scripts/local-top/diskline']) {
      const text = await readFile(join(system.root, 'etc/initramfs-tools', script), 'utf8');
      assert.match(text, /^#!\/bin\/sh/);
    }
    const statuses = await protectionStatus(loop.device, system);
    assert.deepEqual(
      statuses.map((each) => each.kind),
      ['unprotected', 'needs-restart', 'needs-restart'],
    );
    assert.match(statuses[1]!.detail, /next restart/);

    await unprotect({ device: p2, confirm: p2 }, system);
    assert.ok((await systemFiles()).includes('etc/initramfs-tools/hooks/diskline'), 'the hook stays for p3');
    await assert.rejects(unprotect({ device: p2, confirm: p2 }, system), /not protected/);
    await unprotect({ device: p3, confirm: p3 }, system);
    assert.deepEqual(await systemFiles(), before, 'nothing of the boot setup is left');
    assert.equal(initramfsUpdates, 4);
  },
);
