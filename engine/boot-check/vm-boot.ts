// Boots a disk image in a virtual machine until its console shows a marker: the proof that a restored system
// disk starts, under UEFI (OVMF) or BIOS (SeaBIOS), with qemu (TCG unless KVM is asked for). The disk is attached
// with a throwaway overlay (snapshot=on), so the boot writes nothing to it. The verdict is booted / not booted,
// with the console's tail either way. The time limit is a guard: the marker or the guest powering off ends it.
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Clock, systemClock } from '../../protocol/clock.ts';

const QEMU = 'qemu-system-x86_64';
/** OVMF's code and variable store as Debian's ovmf package installs them (first pair found wins). */
const OVMF_PAIRS = [
  ['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_VARS_4M.fd'],
  ['/usr/share/OVMF/OVMF_CODE.fd', '/usr/share/OVMF/OVMF_VARS.fd'],
  ['/usr/share/ovmf/OVMF.fd', ''],
] as const;
const SEABIOS = '/usr/share/seabios/bios.bin';
/** ESC [ … letter, and ESC c: what firmware writes to a serial terminal. */
const TERMINAL_ESCAPES = new RegExp(`${String.fromCharCode(27)}(\\[[0-9;?]*[A-Za-z]|c)`, 'g');

export type Firmware = 'uefi' | 'bios';

export interface BootOptions {
  disk: string;
  firmware: Firmware;
  /** What the console shows once the system is up (a login prompt, a line a boot hook prints). */
  marker: RegExp;
  /** A guard only: a boot under TCG on a busy machine is slow. */
  timeoutMs?: number;
  memoryMiB?: number;
  clock?: Clock;
}

export interface BootResult {
  booted: boolean;
  firmware: Firmware;
  seconds: number;
  /** The last lines the console showed. */
  consoleTail: string;
  /** Why it did not boot: powered off before the marker, or the time limit. */
  reason: string | null;
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK | constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function readable(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '/usr/bin:/bin').split(':').some((dir) => dir && executable(join(dir, tool)));
}

function ovmf(): { code: string; vars: string } | null {
  for (const [code, vars] of OVMF_PAIRS)
    if (readable(code) && (!vars || readable(vars))) return { code, vars };
  return null;
}

/** Why a boot under this firmware cannot run here, or null when it can. */
export function bootUnavailableReason(firmware: Firmware): string | null {
  if (!onPath(QEMU)) return `${QEMU} is missing (package qemu-system-x86)`;
  if (firmware === 'uefi' && !ovmf()) return 'OVMF is missing (package ovmf)';
  if (firmware === 'bios' && !readable(SEABIOS)) return 'SeaBIOS is missing (package seabios)';
  return null;
}

const tail = (text: string, lines = 30) => text.split('\n').slice(-lines).join('\n');

export async function bootInVm(options: BootOptions): Promise<BootResult> {
  const reason = bootUnavailableReason(options.firmware);
  if (reason) throw new Error(`cannot boot ${options.disk} under ${options.firmware}: ${reason}`);
  const work = await mkdtemp(join(tmpdir(), 'diskline-boot-'));
  const started = performance.now();
  try {
    const memory = options.memoryMiB ?? 512;
    const args = [
      '-machine',
      'q35',
      '-accel',
      process.env.DISKLINE_VM_ACCEL ?? 'tcg',
      '-cpu',
      'max',
      '-m',
      `${memory}M`,
    ];
    args.push('-nographic', '-no-reboot', '-nic', 'none', '-serial', 'stdio', '-monitor', 'none');
    if (options.firmware === 'uefi') {
      const firmware = ovmf()!;
      args.push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${firmware.code}`);
      if (firmware.vars) {
        // The variable store is written by the firmware: each boot gets its own copy.
        const vars = join(work, 'vars.fd');
        await copyFile(firmware.vars, vars);
        args.push('-drive', `if=pflash,format=raw,unit=1,file=${vars}`);
      }
    } else {
      args.push('-bios', SEABIOS);
    }
    args.push('-drive', `file=${options.disk},if=virtio,format=raw,snapshot=on`);
    const qemu = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const output = await new Promise<{ text: string; booted: boolean; reason: string | null }>((resolve) => {
      let text = '';
      let settled = false;
      const finish = (booted: boolean, why: string | null) => {
        if (settled) return;
        settled = true;
        guard.cancel();
        if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
        resolve({ text, booted, reason: why });
      };
      const onData = (data: Buffer) => {
        text += data.toString('latin1').replace(/\r\n?/g, '\n').replace(TERMINAL_ESCAPES, '');
        if (options.marker.test(text)) finish(true, null);
      };
      qemu.stdout.on('data', onData);
      qemu.stderr.on('data', onData);
      qemu.once('error', (error) => finish(false, `qemu did not start: ${error.message}`));
      qemu.once('close', (code) =>
        finish(
          options.marker.test(text),
          `the machine stopped (qemu exit ${code}) before the console showed ${options.marker}`,
        ),
      );
      const timeoutMs = options.timeoutMs ?? 600_000;
      const guard = sleepCancellable(options.clock ?? systemClock, timeoutMs, () =>
        finish(false, `the console did not show ${options.marker} within ${Math.round(timeoutMs / 1000)} s`),
      );
    });
    await new Promise<void>((resolve) => {
      if (qemu.exitCode !== null || qemu.signalCode !== null) resolve();
      else qemu.once('close', () => resolve());
    });
    return {
      booted: output.booted,
      firmware: options.firmware,
      seconds: (performance.now() - started) / 1000,
      consoleTail: tail(output.text),
      reason: output.booted ? null : output.reason,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Calls `fire` after `ms` on the clock; cancel() stops it. */
function sleepCancellable(clock: Clock, ms: number, fire: () => void): { cancel(): void } {
  const controller = new AbortController();
  clock.sleep(ms, controller.signal).then(fire, () => undefined);
  return { cancel: () => controller.abort() };
}
