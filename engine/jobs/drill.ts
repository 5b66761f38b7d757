// The restore drill: proves a restore point restores to file systems that check clean. The point is
// restored to a sparse scratch image (only used bytes take space), each partition is attached read-only as
// its own loop device, and each file system is checked without repair (fsck -n and its kin); the scratch
// image is removed after. A point with no file system to check fails the drill: nothing was proven.
// The outcome is recorded with the point in the engine's state.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { StateStore } from '../config/state.ts';
import { openReader } from '../device/open.ts';
import { readPartitionTable } from '../partition/read.ts';
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
    // -p probes the device itself: the blkid cache may remember what an earlier user of this loop device held.
    return (await run('blkid', ['-p', '-o', 'value', '-s', 'TYPE', device])).stdout.trim() || null;
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
  let checked = 0;
  try {
    await runRestore({ repo: params.repo, point: params.point, to: image }, context);
    // One read-only loop device per partition (offset and size limit), so no partition nodes are needed.
    const reader = await openReader(image);
    let table: Awaited<ReturnType<typeof readPartitionTable>>;
    try {
      table = await readPartitionTable(reader);
    } finally {
      await reader.close();
    }
    const volumes = table.partitions.length
      ? table.partitions.map((partition) => ({
          name: `partition ${partition.index}`,
          start: partition.start,
          size: partition.size,
        }))
      : [{ name: 'whole disk', start: 0, size: 0 }];
    for (const volume of volumes) {
      context.signal.throwIfAborted();
      const args = ['--find', '--show', '--read-only', '--offset', String(volume.start)];
      if (volume.size) args.push('--sizelimit', String(volume.size));
      loop = (await run('losetup', [...args, image])).stdout.trim();
      try {
        const outcome = await check(loop);
        if (outcome) {
          lines.push(`${volume.name}: ${outcome.line.slice(loop.length + 2)}`);
          checked++;
          ok &&= outcome.ok;
        }
      } finally {
        await run('losetup', ['-d', loop]).catch(() => {});
        loop = null;
      }
    }
    if (checked === 0) {
      ok = false;
      lines.push('no file system found to check: the drill cannot vouch for this point');
    }
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
