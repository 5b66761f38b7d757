// The restore drill: proves a restore point restores to file systems that check clean. The point is served
// read-only through the tap as a loop device (nothing is copied: reads decode chunks), or, where the tap is
// unavailable, restored to a sparse scratch image with each partition attached read-only as its own loop
// device; each file system is checked without repair (fsck -n and its kin). A point with no file system to
// check fails the drill: nothing was proven. The outcome is recorded with the point in the engine's state.
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { StateStore } from '../config/state.ts';
import { openReader } from '../device/open.ts';
import { nativeHelperAvailable } from '../native/index.ts';
import { readPartitionTable } from '../partition/read.ts';
import { whileReading } from '../repository/locks.ts';
import { servePointReadOnly } from '../tap/serve-point.ts';
import { tapUnavailableReason } from '../tap/system-state.ts';
import { bootDrill, type DrillBootOptions } from './drill-boot.ts';
import type { JobContext } from './manager.ts';
import { withRepository } from './repository-access.ts';
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

/** Each volume of the point as a read-only device: name for the record and device path. */
type VolumeCheck = (volumes: { name: string; device: string }[]) => Promise<void>;

/**
 * Serves the point read-only through the tap (no copy: reads decode chunks on demand) and checks each
 * partition device, or the whole device without a partition table.
 */
async function checkServed(repoPath: string, pointId: string, each: VolumeCheck): Promise<void> {
  await withRepository(repoPath, (repo) =>
    whileReading(repo.backend, pointId, async () => {
      const reader = await repo.openPoint(pointId);
      const served = await servePointReadOnly(
        reader,
        reader.manifest.source.size,
        `restore point ${pointId}`,
      );
      try {
        await each(
          served.partitions.length
            ? served.partitions.map((device, index) => ({ name: `partition ${index + 1}`, device }))
            : [{ name: 'whole disk', device: served.loopDevice }],
        );
      } finally {
        await served.stop();
      }
    }),
  );
}

/** Restores the point to a sparse scratch image and attaches each partition as its own read-only loop device. */
async function checkScratch(
  repoPath: string,
  pointId: string,
  context: JobContext,
  each: VolumeCheck,
): Promise<void> {
  const scratch = await mkdtemp(join(tmpdir(), 'diskline-drill-'));
  const loops: string[] = [];
  try {
    const image = join(scratch, 'point.img');
    await runRestore({ repo: repoPath, point: pointId, to: image }, context);
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
    const devices: { name: string; device: string }[] = [];
    for (const volume of volumes) {
      const args = ['--find', '--show', '--read-only', '--offset', String(volume.start)];
      if (volume.size) args.push('--sizelimit', String(volume.size));
      const loop = (await run('losetup', [...args, image])).stdout.trim();
      loops.push(loop);
      devices.push({ name: volume.name, device: loop });
    }
    await each(devices);
  } finally {
    for (const loop of loops) await run('losetup', ['-d', loop]).catch(() => {});
    await rm(scratch, { recursive: true, force: true });
  }
}

export async function runDrill(
  /** `repo` is opened; `name` (default: repo) is how the user named it, for the point's records. */
  params: {
    repo: string;
    name?: string;
    point: string;
    method?: 'served' | 'scratch';
    boot?: DrillBootOptions;
  },
  context: JobContext,
  state: StateStore,
): Promise<Record<string, unknown>> {
  const lines: string[] = [];
  let ok = true;
  let checked = 0;
  const each: VolumeCheck = async (volumes) => {
    for (const volume of volumes) {
      context.signal.throwIfAborted();
      const outcome = await check(volume.device);
      if (!outcome) continue;
      lines.push(`${volume.name}: ${outcome.line.slice(volume.device.length + 2)}`);
      checked++;
      ok &&= outcome.ok;
    }
  };
  const served = params.method
    ? params.method === 'served'
    : nativeHelperAvailable() && tapUnavailableReason() === null;
  try {
    if (served) await checkServed(params.repo, params.point, each);
    else await checkScratch(params.repo, params.point, context, each);
    if (checked === 0) {
      ok = false;
      lines.push('no file system found to check: the drill cannot vouch for this point');
    }
    if (params.boot) {
      const booted = await bootDrill(params.repo, params.point, context, params.boot);
      lines.push(...booted.lines);
      ok &&= booted.ok;
    }
  } catch (error) {
    if (context.signal.aborted) throw error;
    ok = false;
    lines.push(`the drill could not run: ${(error as Error).message}`);
  }
  const detail = lines.join('\n');
  const checks = (state.checks[params.name ?? params.repo] ??= {});
  checks[params.point] = { ...checks[params.point], drill: { time: new Date().toISOString(), ok, detail } };
  await state.saveChecks();
  if (!ok) throw new Error(`Restore drill of ${params.point} failed: ${detail}`);
  return { ok, detail, method: served ? 'served read-only' : 'scratch restore' };
}
