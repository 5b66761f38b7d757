// The restore drill: proves a restore point restores to file systems that check clean. The point is
// restored to a sparse scratch image (only used bytes take space), attached read-only with its partitions,
// and each file system is checked without repair (fsck -n and its kin); the scratch image is removed after.
// The outcome is recorded with the point in the engine's state.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { StateStore } from '../config/state.ts';
import type { JobContext } from './manager.ts';
import { runRestore } from './restore.ts';

const run = promisify(execFile);

/** The read-only check for each file system type blkid names. */
const CHECKS: Record<string, (device: string) => [string, string[]]> = {
  ext2: (device) => ['e2fsck', ['-n', '-f', device]],
  ext3: (device) => ['e2fsck', ['-n', '-f', device]],
  ext4: (device) => ['e2fsck', ['-n', '-f', device]],
  vfat: (device) => ['fsck.vfat', ['-n', device]],
  ntfs: (device) => ['ntfsfix', ['-n', device]],
  xfs: (device) => ['xfs_repair', ['-n', device]],
  btrfs: (device) => ['btrfs', ['check', '--readonly', device]],
};

async function filesystemType(device: string): Promise<string | null> {
  try {
    return (await run('blkid', ['-o', 'value', '-s', 'TYPE', device])).stdout.trim() || null;
  } catch {
    return null;
  }
}

/** Checks one device read-only; returns a line for the record. */
async function check(device: string): Promise<{ ok: boolean; line: string } | null> {
  const type = await filesystemType(device);
  if (!type) return null;
  const command = CHECKS[type];
  if (!command) return { ok: true, line: `${device}: ${type} (no read-only checker; not checked)` };
  const [program, args] = command(device);
  try {
    await run(program, args, { maxBuffer: 16 << 20 });
    return { ok: true, line: `${device}: ${type} clean (${program} ${args.slice(0, -1).join(' ')})` };
  } catch (error) {
    const failure = error as { code?: number | string; stdout?: string; stderr?: string };
    if (failure.code === 'ENOENT')
      return { ok: true, line: `${device}: ${type} (${program} not installed; not checked)` };
    const said = `${failure.stdout ?? ''}${failure.stderr ?? ''}`.trim().split('\n').slice(-2).join(' / ');
    return { ok: false, line: `${device}: ${type} has errors (${program} exit ${failure.code}: ${said})` };
  }
}

export async function runDrill(
  params: { repo: string; point: string },
  context: JobContext,
  state: StateStore,
): Promise<Record<string, unknown>> {
  const scratch = await mkdtemp(join(tmpdir(), 'diskline-drill-'));
  const image = join(scratch, 'point.img');
  let loop: string | null = null;
  const lines: string[] = [];
  let ok = true;
  try {
    await runRestore({ repo: params.repo, point: params.point, to: image }, context);
    loop = (await run('losetup', ['--find', '--show', '--read-only', '--partscan', image])).stdout.trim();
    await run('udevadm', ['settle']).catch(() => {});
    const { stdout } = await run('lsblk', ['-lnpo', 'NAME', loop]);
    const devices = stdout
      .split('\n')
      .map((name) => name.trim())
      .filter(Boolean);
    for (const device of devices) {
      context.signal.throwIfAborted();
      const outcome = await check(device);
      if (!outcome) continue;
      lines.push(outcome.line);
      ok &&= outcome.ok;
    }
    if (lines.length === 0) lines.push('no file system found to check');
  } catch (error) {
    if (context.signal.aborted) throw error;
    ok = false;
    lines.push(`the drill could not run: ${(error as Error).message}`);
  } finally {
    if (loop) await run('losetup', ['-d', loop]).catch(() => {});
    await rm(scratch, { recursive: true, force: true });
  }
  const detail = lines.join('\n');
  const checks = (state.checks[params.repo] ??= {});
  checks[params.point] = { ...checks[params.point], drill: { time: new Date().toISOString(), ok, detail } };
  await state.saveChecks();
  if (!ok) throw new Error(`Restore drill of ${params.point} failed: ${detail}`);
  return { ok, detail };
}
