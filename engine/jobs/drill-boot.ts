// The restore drill's boot proof: the point is restored to a sparse scratch image (fitted and boot-checked like
// any restore), then booted in a virtual machine under each firmware the disk is set up for (UEFI when it has
// an EFI system partition, BIOS when its MBR holds boot code) until the console shows the marker. Booted or not,
// each boot's console tail goes into the drill's record. A boot check error stops before any boot.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BootReport } from '../boot-check/check.ts';
import { type BootResult, bootInVm, bootUnavailableReason, type Firmware } from '../boot-check/vm-boot.ts';
import type { JobContext } from './manager.ts';
import { runRestore } from './restore.ts';

/** A login prompt on the serial console: what a restored Linux system shows once it is up. */
export const DEFAULT_BOOT_MARKER = 'login: ';

export interface DrillBootOptions {
  /** Firmwares to boot under; default every one the disk is set up for. */
  firmware?: Firmware[];
  /** Text the console shows once the system is up (default a login prompt). */
  marker?: string;
  timeoutMs?: number;
  /** Restore onto a scratch disk of this size (default the point's): proves a fitted restore boots. */
  targetSize?: number;
  grow?: boolean;
}

export interface DrillBootOutcome {
  ok: boolean;
  lines: string[];
  boots: BootResult[];
  bootCheck: BootReport | null;
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export async function bootDrill(
  repo: string,
  point: string,
  context: JobContext,
  options: DrillBootOptions = {},
): Promise<DrillBootOutcome> {
  const scratch = await mkdtemp(join(tmpdir(), 'diskline-drill-boot-'));
  const lines: string[] = [];
  const boots: BootResult[] = [];
  try {
    const image = join(scratch, 'point.img');
    const restored = await runRestore(
      {
        repo,
        point,
        to: image,
        ...(options.targetSize ? { targetSize: options.targetSize } : {}),
        ...(options.grow ? { grow: true } : {}),
      },
      context,
    );
    const bootCheck = (restored.bootCheck as BootReport | undefined) ?? null;
    const plan = restored.plan as { mode: string; targetSize: number } | undefined;
    if (plan) lines.push(`boot: restored onto a ${plan.targetSize}-byte scratch disk (${plan.mode})`);
    if (!bootCheck) {
      return {
        ok: false,
        lines: ['boot: the point holds no system disk (no ESP, no boot code, no root)'],
        boots,
        bootCheck,
      };
    }
    for (const problem of bootCheck.problems)
      lines.push(`boot check ${problem.severity}: ${problem.message}`);
    if (!bootCheck.bootable) {
      lines.push('boot: not attempted, the boot check found what would stop it');
      return { ok: false, lines, boots, bootCheck };
    }
    const supported: Firmware[] = [];
    if (bootCheck.uefi.esp !== null) supported.push('uefi');
    if (bootCheck.bios.bootCode) supported.push('bios');
    let ok = true;
    for (const firmware of options.firmware ?? supported) {
      context.signal.throwIfAborted();
      if (!supported.includes(firmware)) {
        ok = false;
        lines.push(`boot (${firmware}): the disk is not set up for it`);
        continue;
      }
      const unavailable = bootUnavailableReason(firmware);
      if (unavailable) {
        ok = false;
        lines.push(`boot (${firmware}): cannot run here: ${unavailable}`);
        continue;
      }
      const result = await bootInVm({
        disk: image,
        firmware,
        marker: new RegExp(escapeRegExp(options.marker ?? DEFAULT_BOOT_MARKER)),
        ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      });
      boots.push(result);
      ok &&= result.booted;
      lines.push(
        result.booted
          ? `boot (${firmware}): booted in ${result.seconds.toFixed(0)} s`
          : `boot (${firmware}): did not boot: ${result.reason}; console:\n${result.consoleTail}`,
      );
    }
    return { ok, lines, boots, bootCheck };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
