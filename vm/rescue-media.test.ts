// The rescue media's proof: `diskline media` builds the ISO; the small bootable Debian disk (boot-image.ts) is
// backed up with the CLI into a repository on a second virtual disk; the ISO boots under qemu (SeaBIOS, from a
// CD) with that disk and an empty third one, its rescue program finds the repository by scanning the disks and
// restores the latest point onto the third disk unattended (kernel command line); that disk then boots to its
// marker under BIOS and UEFI. The same image written as a USB stick boots under UEFI and refuses a target that
// holds the repository before the engine starts. Media without the unattended settings is driven through its
// menu at the serial console, as a user would: find the repository, pick the latest point and the disk, read the
// plan, type the disk's name; the restored disk boots.
// Opt-in (DISKLINE_VM_SLOW=1): building the media and starting Node under TCG take several minutes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bootInVm, bootUnavailableReason } from '../engine/boot-check/vm-boot.ts';
import { mediaUnavailableReason } from '../engine/media/build-media.ts';
import { runTool } from '../engine/testing/tools.ts';
import { BOOT_MARKER_PATTERN, type BootImage, bootImage, bootImageUnavailableReason } from './boot-image.ts';

const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MiB = 1024 * 1024;
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
/** ESC [ … letter, and ESC c: what firmware and GRUB write to a serial terminal. */
const TERMINAL_ESCAPES = new RegExp(`${String.fromCharCode(27)}(\\[[0-9;?]*[A-Za-z]|c)`, 'g');
const tail = (text: string) => text.split('\n').slice(-30).join('\n');
const skip: string | false =
  (process.env.DISKLINE_VM_SLOW !== '1' &&
    'opt-in: set DISKLINE_VM_SLOW=1 (builds the media, then boots it and restores under TCG: 7 to 9 minutes)') ||
  mediaUnavailableReason() ||
  bootUnavailableReason('bios') ||
  bootUnavailableReason('uefi') ||
  bootImageUnavailableReason() ||
  false;

let dir = '';
let image: BootImage;
let iso = '';
let repoDisk = '';

/** Runs the CLI as a user would, with the passphrase in a file. */
async function diskline(args: string[]): Promise<string> {
  const { stdout } = await runTool(process.execPath, [join(projectRoot, 'engine/cli/main.ts'), ...args]);
  return stdout;
}

async function firstMiBHash(path: string): Promise<string> {
  return (await runTool('sh', ['-c', 'head -c 1048576 "$1" | sha256sum', 'sh', path])).stdout;
}

/** What a user types at the serial console: each answer once its prompt has appeared after the previous one. */
type Dialogue = { prompt: RegExp; answer: string }[];

/** Boots qemu until the guest powers off (the rescue program's end), returning the serial console's text. */
function bootUntilOff(args: string[], timeoutMs: number, dialogue: Dialogue = []): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const qemu = spawn(
      'qemu-system-x86_64',
      [
        '-machine',
        'q35',
        '-accel',
        process.env.DISKLINE_VM_ACCEL ?? 'tcg',
        '-cpu',
        'max',
        // One vCPU: Node under multi-threaded TCG stopped on V8 checks (docs/test-bed.md).
        '-smp',
        '1',
        '-m',
        '1536M',
        '-nographic',
        '-no-reboot',
        '-nic',
        'none',
        ...args,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let text = '';
    let answeredUpTo = 0;
    const steps = [...dialogue];
    const onData = (data: Buffer) => {
      text += data.toString('latin1').replace(/\r\n?/g, '\n');
      const step = steps[0];
      const seen = step && text.slice(answeredUpTo).replace(TERMINAL_ESCAPES, '').match(step.prompt);
      if (step && seen) {
        steps.shift();
        answeredUpTo = text.length;
        qemu.stdin.write(`${step.answer}\n`);
      }
    };
    qemu.stdout.on('data', onData);
    qemu.stderr.on('data', onData);
    const guard = setTimeout(() => {
      qemu.kill('SIGKILL');
      reject(
        new Error(`the rescue system ran past ${timeoutMs / 1000} s; its console ended with:\n${tail(text)}`),
      );
    }, timeoutMs);
    qemu.once('error', reject);
    qemu.once('close', () => {
      clearTimeout(guard);
      resolvePromise(text.replace(TERMINAL_ESCAPES, ''));
    });
  });
}

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'diskline-rescue-'));
  image = await bootImage();
  const key = join(dir, 'key');
  await writeFile(key, 'rescue media passphrase, long enough\n', { mode: 0o600 });

  // The repository, made and filled on the host with the CLI, then put on a GPT disk's ext4 partition.
  const content = join(dir, 'repo-fs');
  const repo = join(content, 'backups', 'diskline');
  await mkdir(dirname(repo), { recursive: true });
  await diskline(['init', '--repo', repo, '--password-file', key]);
  await diskline(['backup', image.path, '--repo', repo, '--password-file', key]);
  repoDisk = join(dir, 'repo-disk.img');
  await writeFile(repoDisk, '');
  await truncate(repoDisk, 128 * MiB);
  await runTool('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', repoDisk], {
    input: 'label: gpt\nstart=2048, type=L\n',
  });
  await runTool('mkfs.ext4', [
    '-q',
    '-F',
    '-L',
    'dl-backups',
    '-d',
    content,
    '-E',
    `offset=${MiB}`,
    repoDisk,
    `${126 * 1024}k`,
  ]);

  // The media: scans for the repository, carries the key, and restores the latest point onto /dev/vdb
  // unattended (the CD is /dev/sr0, the repository's disk /dev/vda).
  iso = join(dir, 'rescue.iso');
  await buildMedia(iso, key, [
    '--boot-args',
    // no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check can fail and panic.
    'no_timer_check diskline.restore=latest diskline.target=/dev/vdb diskline.confirm=vdb',
  ]);
});

async function buildMedia(path: string, key: string, extra: string[]): Promise<void> {
  const started = performance.now();
  const built = JSON.parse(
    await diskline(['media', '--out', path, '--key-file', key, '--serial-console', ...extra, '--json']),
  ) as { bytes: number; rootBytes: number; steps: Record<string, number> };
  console.log(
    `# media: ${(built.bytes / MiB).toFixed(1)} MiB (root ${(built.rootBytes / MiB).toFixed(1)} MiB) in ${((performance.now() - started) / 1000).toFixed(0)} s ${JSON.stringify(built.steps)}`,
  );
}
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('the rescue ISO finds the repository on a second disk, restores onto a third, and that disk boots', {
  skip,
}, async () => {
  const target = join(dir, 'target.img');
  await writeFile(target, '');
  await truncate(target, image.size);
  const started = performance.now();
  const console_ = await bootUntilOff(
    [
      '-bios',
      '/usr/share/seabios/bios.bin',
      '-device',
      'virtio-scsi-pci,id=scsi',
      '-drive',
      `if=none,id=cd,file=${iso},media=cdrom,readonly=on`,
      '-device',
      'scsi-cd,drive=cd,bootindex=0',
      '-drive',
      `file=${repoDisk},if=virtio,format=raw,cache=none`,
      '-drive',
      `file=${target},if=virtio,format=raw,cache=none`,
    ],
    30 * 60_000,
  );
  const lines = console_
    .split('\n')
    .filter((line) => /^(diskline|DISKLINE|Restored|target:|boot)/.test(line));
  console.log(
    `# rescue boot and restore: ${((performance.now() - started) / 1000).toFixed(0)} s\n${lines.slice(-20).join('\n').replace(/^/gm, '# ')}`,
  );
  assert.match(console_, /diskline rescue: media found on \/dev\/sr0/, tail(console_));
  assert.match(
    console_,
    /diskline rescue: repository: \/run\/rescue\/scan\/vda1\/backups\/diskline \(on \/dev\/vda1\)/,
    tail(console_),
  );
  assert.match(console_, /DISKLINE-RESCUE: restore done/, tail(console_));

  for (const firmware of ['bios', 'uefi'] as const) {
    const boot = await bootInVm({ disk: target, firmware, marker: BOOT_MARKER_PATTERN });
    console.log(
      `# restored disk, ${firmware}: ${boot.booted ? 'booted' : 'not booted'} in ${boot.seconds.toFixed(0)} s`,
    );
    assert.ok(boot.booted, `${firmware}: ${boot.reason}\n${boot.consoleTail}`);
    assert.match(boot.consoleTail, new RegExp(`root=UUID=${image.rootUuid}`));
  }
});

test('a USB image with the repository location baked in boots under UEFI and refuses a target that holds the repository', {
  skip,
}, async () => {
  // The stick is /dev/vda here, the repository's disk /dev/vdb: the baked target. Nothing may be written to it.
  // The location by label: without udev the rescue system finds it by probing (findfs).
  const stick = join(dir, 'stick.img');
  await buildMedia(stick, join(dir, 'key'), [
    '--raw',
    '--repo',
    'LABEL=dl-backups:/backups/diskline',
    '--boot-args',
    'no_timer_check diskline.restore=latest diskline.target=/dev/vdb diskline.confirm=vdb',
  ]);
  const vars = join(dir, 'vars.fd');
  await copyFile(OVMF_VARS, vars);
  const tableBefore = await firstMiBHash(repoDisk);
  const console_ = await bootUntilOff(
    [
      '-drive',
      `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
      '-drive',
      `if=pflash,format=raw,unit=1,file=${vars}`,
      '-drive',
      `file=${stick},if=virtio,format=raw,cache=none,readonly=on`,
      '-drive',
      `file=${repoDisk},if=virtio,format=raw,cache=none`,
    ],
    15 * 60_000,
  );
  assert.match(console_, /diskline rescue: media found on \/dev\/vda/, tail(console_));
  assert.match(
    console_,
    /diskline rescue: repository: \/run\/rescue\/scan\/vdb1\/backups\/diskline \(on \/dev\/vdb1\)/,
    tail(console_),
  );
  assert.match(console_, /diskline rescue: refused: \/dev\/vdb holds the repository/, tail(console_));
  assert.match(console_, /DISKLINE-RESCUE: restore refused/, tail(console_));
  assert.doesNotMatch(console_, /DISKLINE-RESCUE: restore done/);
  // Its file system was mounted to be found (and made writable for a restore's reader registration), so its
  // bytes may change; the refusal wrote nothing: the table is as it was and the file system unmounted clean.
  assert.equal(await firstMiBHash(repoDisk), tableBefore);
  const partition = join(dir, 'repo-partition.img');
  await runTool('dd', [`if=${repoDisk}`, `of=${partition}`, 'bs=1M', 'skip=1', 'count=126', 'status=none']);
  await runTool('e2fsck', ['-fn', partition]);
});

test('from the menu a user picks the found repository and a point, sees the plan, and restores by typing the disk', {
  skip,
}, async () => {
  const menuIso = join(dir, 'menu.iso');
  await buildMedia(menuIso, join(dir, 'key'), ['--boot-args', 'no_timer_check']);
  const target = join(dir, 'menu-target.img');
  await writeFile(target, '');
  await truncate(target, image.size);
  const started = performance.now();
  const console_ = await bootUntilOff(
    [
      '-bios',
      '/usr/share/seabios/bios.bin',
      '-device',
      'virtio-scsi-pci,id=scsi',
      '-drive',
      `if=none,id=cd,file=${menuIso},media=cdrom,readonly=on`,
      '-device',
      'scsi-cd,drive=cd,bootindex=0',
      '-drive',
      `file=${repoDisk},if=virtio,format=raw,cache=none`,
      '-drive',
      `file=${target},if=virtio,format=raw,cache=none`,
    ],
    30 * 60_000,
    [
      { prompt: /Choice: $/, answer: '1' },
      { prompt: /1\) \/dev\/vda1 {2}\S+\/backups\/diskline\n[\s\S]*Repository number: $/, answer: '1' },
      { prompt: /Choice: $/, answer: '4' },
      { prompt: /Point id \(or 'latest'\): $/, answer: 'latest' },
      { prompt: /Restore onto which disk[^\n]*\? $/, answer: 'vdb' },
      { prompt: /Type the disk's name \(vdb\) to restore onto it: $/, answer: 'vdb' },
      { prompt: /Restored point [\s\S]*Choice: $/, answer: '8' },
    ],
  );
  console.log(`# menu boot, choices and restore: ${((performance.now() - started) / 1000).toFixed(0)} s`);
  assert.match(console_, /target: \S+ \/dev\/vdb \(268435456 bytes\)/, tail(console_));
  assert.match(console_, /Restored point [0-9a-f]{32} to \/dev\/vdb/, tail(console_));
  const boot = await bootInVm({ disk: target, firmware: 'bios', marker: BOOT_MARKER_PATTERN });
  assert.ok(boot.booted, `${boot.reason}\n${boot.consoleTail}`);
});
