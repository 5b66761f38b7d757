// A restore onto a target of another size, by the fit plan (partition/fit-layout.ts). A partition that must
// shrink is first restored into a sparse staging file (only its used bytes take space) and shrunk there by its
// own tool — resize2fs moves the blocks that lie past the new end, ntfsresize and btrfs do likewise — so every
// refusal (the file system cannot get that small, a tool failed) comes before a byte of the target is written.
// Then the rest of the point goes straight to the target through routes (kept partitions in place, moved ones
// to their new place), the shrunk file system's used bytes are copied from staging, the partition table is
// rewritten for the new layout (a GPT's backup at the new end), and a grown partition's file system is grown
// on the target. Interrupted after the first target write, the target holds a partial restore: run it again.
import { mkdtemp, open, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RefusalError } from '../../protocol/failure.ts';
import { openReader, openWriter } from '../device/open.ts';
import type { BlockWriter } from '../device/types.ts';
import { usedMapOf } from '../filesystems/index.ts';
import { partitionVolume } from '../filesystems/volume.ts';
import { ALIGNMENT, type FitPlan, type PlannedPartition, tableTailBytes } from '../partition/fit-layout.ts';
import { rewritePartitionTable } from '../partition/rewrite-table.ts';
import type { Manifest } from '../repository/manifest.ts';
import type { Repository } from '../repository/repository.ts';
import { restorePoint } from '../repository/restore.ts';
import { runTool, withLoopRange } from '../volume-files/loop-range.ts';
import { growFilesystem, ShrinkImpossibleError, shrinkFilesystem } from './fs-resize.ts';
import { type Route, routedWriter } from './routed-writer.ts';

/** The restore cannot be done onto this target; nothing was written to it. */
export class FitRefusedError extends RefusalError {
  readonly neededBytes: number;
  constructor(message: string, neededBytes: number) {
    super(message);
    this.name = 'FitRefusedError';
    this.neededBytes = neededBytes;
  }
}

export interface FittedRestoreOptions {
  /** The target is a block device (else an image file, emptied and sized to the plan's target size). */
  isDevice: boolean;
  /** Where staging files go (default the OS temp directory); needs room for the shrunk partitions' used bytes. */
  stagingDir?: string;
  onProgress?: (progress: { doneBytes: number; totalBytes: number }) => void;
  /** Checked between steps: an abort stops the restore there. */
  signal?: AbortSignal;
  /** Called after the table and file systems are in place, before the target is closed (identity changes). */
}

export interface FittedRestoreResult {
  writtenBytes: number;
  usedBytes: number;
  /** Bytes restored into staging files before shrinking. */
  stagedBytes: number;
  /** Seconds each phase took. */
  seconds: { staging: number; shrinking: number; target: number; copyShrunk: number; grow: number };
  warnings: string[];
}

const end = (p: PlannedPartition) => p.from.start + p.from.size;

/** Source ranges that go to the target, and where: everything before the resized partition in place, then the
 * partitions (kept, moved or grown) that are not shrunk. */
function targetRoutes(plan: FitPlan, target: BlockWriter): Route[] {
  const partitions = [...plan.partitions].sort((a, b) => a.from.start - b.from.start);
  const resized = partitions.find((p) => p.change === 'shrunk' || p.change === 'grown');
  const limit = Math.min(plan.sourceSize, plan.targetSize - tableTailBytes(plan.table, plan.sectorSize));
  // Up to the first partition that changes (or the end), bytes stay where they are: the table, the boot area,
  // kept partitions and the gaps between them.
  const inPlaceEnd = Math.min(limit, resized ? resized.from.start : limit);
  const routes: Route[] = [{ start: 0, end: inPlaceEnd, to: target, offset: 0 }];
  for (const p of partitions) {
    if (p.from.start < inPlaceEnd || p.change === 'shrunk') continue;
    // A grown partition brings its old bytes; a moved one keeps its size.
    const length = Math.min(p.from.size, p.to.size);
    routes.push({ start: p.from.start, end: p.from.start + length, to: target, offset: p.to.start });
  }
  return routes.filter((route) => route.end > route.start);
}

/** Copies the used bytes of the shrunk file system (first `size` bytes of `staging`) to `target` at `at`. */
async function copyShrunk(staging: string, size: number, target: BlockWriter, at: number): Promise<number> {
  const reader = await openReader(staging);
  try {
    const map = await usedMapOf(partitionVolume(reader, 0, size, `the shrunk file system in ${staging}`));
    let copied = 0;
    const step = 8 * ALIGNMENT;
    for (const range of map.usedRanges) {
      for (let offset = range.start; offset < range.start + range.length; offset += step) {
        const length = Math.min(step, range.start + range.length - offset);
        await target.write(at + offset, await reader.read(offset, length));
        copied += length;
      }
    }
    return copied;
  } finally {
    await reader.close();
  }
}

/**
 * NTFS and FAT boot sectors record where their partition starts (the "hidden sectors" before it, at byte 28);
 * Windows and its loaders trust it, so a moved partition's boot sector (and NTFS's backup at the partition's
 * last sector) says the new start.
 */
async function fixHiddenSectors(target: BlockWriter, p: PlannedPartition, sectorSize: number): Promise<void> {
  if (p.filesystem !== 'ntfs' && !p.filesystem?.startsWith('fat')) return;
  const lba = p.to.start / sectorSize;
  if (lba > 0xffffffff) return;
  const places = [p.to.start];
  if (p.filesystem === 'ntfs') places.push(p.to.start + p.to.size - sectorSize);
  for (const at of places) {
    const sector = Buffer.from(await target.read(at, sectorSize));
    const ntfs = sector.toString('latin1', 3, 11) === 'NTFS    ';
    const fat = sector[510] === 0x55 && sector[511] === 0xaa && (sector[0] === 0xeb || sector[0] === 0xe9);
    if (!(p.filesystem === 'ntfs' ? ntfs : fat)) continue;
    sector.writeUInt32LE(lba, 28);
    await target.write(at, sector);
  }
  // A FAT32 keeps a backup boot sector too (its sector number at byte 50).
  if (p.filesystem === 'fat32') {
    const boot = await target.read(p.to.start, sectorSize);
    const backup = boot.readUInt16LE(50);
    if (backup > 0 && backup < 32) {
      const at = p.to.start + backup * boot.readUInt16LE(11);
      const sector = Buffer.from(await target.read(at, sectorSize));
      sector.writeUInt32LE(lba, 28);
      await target.write(at, sector);
    }
  }
}

export async function restoreFitted(
  repo: Repository,
  manifest: Manifest,
  targetPath: string,
  plan: FitPlan,
  options: FittedRestoreOptions,
): Promise<FittedRestoreResult> {
  if (plan.refusal) throw new FitRefusedError(plan.refusal.reason, plan.refusal.neededBytes);
  const warnings = [...plan.warnings];
  const seconds = { staging: 0, shrinking: 0, target: 0, copyShrunk: 0, grow: 0 };
  const timed = async <T>(phase: keyof typeof seconds, body: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await body();
    } finally {
      seconds[phase] += (performance.now() - started) / 1000;
    }
  };
  const shrunk = plan.partitions.filter((p) => p.change === 'shrunk');
  const stagingRoot = await mkdtemp(join(options.stagingDir ?? tmpdir(), 'diskline-staging-'));
  let stagedBytes = 0;
  let writtenBytes = 0;
  try {
    // 1. Each partition that shrinks: restored alone into a sparse file and shrunk there.
    const staged = new Map<number, string>();
    for (const p of shrunk) {
      options.signal?.throwIfAborted();
      const file = join(stagingRoot, `partition-${p.index}.img`);
      const writer = await openWriter(file, { minSize: p.from.size });
      try {
        const routes = [{ start: p.from.start, end: end(p), to: writer, offset: 0 }];
        const result = await timed('staging', () =>
          restorePoint(repo, manifest, routedWriter(file, manifest.source.size, routes), {
            onlyRanges: routes,
            targetIsZeroed: true,
            chunksChecked: true,
            ...(options.onProgress ? { onProgress: options.onProgress } : {}),
          }),
        );
        stagedBytes += result.writtenBytes;
      } finally {
        await writer.close();
      }
      await timed('shrinking', () =>
        withLoopRange(file, 0, p.from.size, (device) =>
          shrinkFilesystem(device, p.filesystem ?? 'unknown', p.to.size, (body) =>
            withLoopRange(file, 0, p.to.size, body),
          ),
        ).catch((error: unknown) => {
          if (error instanceof ShrinkImpossibleError) {
            const shortBy = error.minimumBytes - p.to.size;
            const needed = Number.isFinite(shortBy)
              ? Math.ceil((plan.targetSize + shortBy) / ALIGNMENT) * ALIGNMENT +
                tableTailBytes(plan.table, plan.sectorSize)
              : plan.sourceSize;
            throw new FitRefusedError(
              `partition ${p.index} cannot shrink to ${p.to.size} bytes: ${error.message}; a target of at least ${needed} bytes is needed. Nothing was written to ${targetPath}`,
              needed,
            );
          }
          throw new FitRefusedError(
            `partition ${p.index} could not be shrunk (${(error as Error).message}); nothing was written to ${targetPath}`,
            plan.sourceSize,
          );
        }),
      );
      staged.set(p.index, file);
    }
    options.signal?.throwIfAborted();

    // 2. The target: an image starts empty at the planned size (unused and zero units cost nothing).
    if (!options.isDevice) {
      const existing = await stat(targetPath).catch(() => null);
      if (existing) await truncate(targetPath, 0);
      await (await open(targetPath, 'a')).close();
      await truncate(targetPath, plan.targetSize);
    }
    const target = await openWriter(targetPath, { minSize: plan.targetSize });
    const grown = plan.partitions.filter((p) => p.change === 'grown');
    try {
      const routes = targetRoutes(plan, target);
      const result = await timed('target', () =>
        restorePoint(repo, manifest, routedWriter(targetPath, manifest.source.size, routes), {
          onlyRanges: routes,
          targetIsZeroed: !options.isDevice,
          chunksChecked: true,
          ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        }),
      );
      writtenBytes += result.writtenBytes;
      for (const p of shrunk) {
        writtenBytes += await timed('copyShrunk', () =>
          copyShrunk(staged.get(p.index)!, p.to.size, target, p.to.start),
        );
      }
      for (const p of plan.partitions) {
        if (p.change === 'moved') await fixHiddenSectors(target, p, plan.sectorSize);
      }
      if (plan.mode !== 'as-is' && plan.table !== 'none') {
        await rewritePartitionTable(target, {
          table: plan.table,
          sectorSize: plan.sectorSize,
          partitions: plan.partitions.map((p) => ({ index: p.index, start: p.to.start, size: p.to.size })),
        });
      }
      await target.flush();
    } finally {
      await target.close();
    }
    // The kernel learns the new table of a disk (an image has no kernel view to refresh).
    if (options.isDevice) await runTool('blockdev', ['--rereadpt', targetPath]).catch(() => undefined);
    // 3. A grown partition's file system fills it (on the target, through a loop device over the partition).
    for (const p of grown) {
      options.signal?.throwIfAborted();
      const warning = await timed('grow', () =>
        withLoopRange(targetPath, p.to.start, p.to.size, (device) => growFilesystem(device, p.filesystem)),
      );
      if (warning) warnings.push(warning);
    }
    return { writtenBytes, usedBytes: manifest.stats.usedBytes, stagedBytes, seconds, warnings };
  } finally {
    await rm(stagingRoot, { recursive: true, force: true });
  }
}
