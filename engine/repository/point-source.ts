// What a restore point records about its source and where a new backup of it starts: the disk's identity
// (path, model, serial, size), its layout (partition table, file systems, used ranges from inspectDisk), the
// parent (the latest complete point of the same source) and an interrupted backup of it to resume.
// Used by the engine's backup job (engine/jobs/backup.ts), the one place a backup is assembled.
import { readFile, realpath, stat } from 'node:fs/promises';
import type { Consistency } from '../../protocol/model.ts';
import { deviceUses } from '../device/busy.ts';
import { contentStamp } from '../device/content-stamp.ts';
import { kernelName, parentDisk } from '../device/sysfs.ts';
import type { BlockReader, ByteRange } from '../device/types.ts';
import { inspectDisk } from '../layout/inspect.ts';
import { runningBackups } from './locks.ts';
import type { Manifest, PartitionRecord, SourceIdentity } from './manifest.ts';
import type { Repository } from './repository.ts';

export interface PointSource {
  identity: SourceIdentity;
  partitions: PartitionRecord[];
  /** Bytes the backup must capture; null: every byte (no usable layout). */
  usedRanges: ByteRange[] | null;
  /** Why the device is busy (mounted, swap, held); empty for an image or an idle device. */
  inUse: string[];
  /** 'offline' when nothing can write to the source; 'crash-consistent' for a device in use without the tap. */
  consistency: Consistency;
  /** The source's content state before anything was read (device/content-stamp.ts); null when unknown. */
  contentStamp: string | null;
  warnings: string[];
}

async function sysText(path: string): Promise<string | null> {
  const text = await readFile(path, 'utf8').catch(() => null);
  return text?.trim() || null;
}

/**
 * Identity and layout of the source `reader` reads (opened from `path`). A layout or used map that cannot be
 * trusted means every byte (or every byte of that partition) is copied, with a warning; with `strict` it throws.
 */
export async function describeSource(
  path: string,
  reader: BlockReader,
  options: { strict?: boolean } = {},
): Promise<PointSource> {
  const real = await realpath(path);
  const isDevice = (await stat(real)).isBlockDevice();
  let model: string | null = null;
  let serial: string | null = null;
  if (isDevice) {
    const disk = await parentDisk(await kernelName(real));
    model = await sysText(`/sys/class/block/${disk}/device/model`);
    serial =
      (await sysText(`/sys/class/block/${disk}/device/serial`)) ??
      (await sysText(`/sys/class/block/${disk}/device/wwid`));
  }
  const inUse = isDevice ? await deviceUses(real) : [];
  // Stamped before the layout is read: a write after this moment changes the stamp a resume compares.
  const stamp = await contentStamp(real);
  const identity: SourceIdentity = { path: real, model, serial, size: reader.size, partitionTable: null };
  const base = {
    inUse,
    consistency: (inUse.length > 0 ? 'crash-consistent' : 'offline') as Consistency,
    contentStamp: stamp,
  };
  try {
    const layout = await inspectDisk(reader, { strict: options.strict ?? false });
    identity.partitionTable = layout.partitionTable;
    return {
      ...base,
      identity,
      partitions: layout.partitions.map((p) => ({
        index: p.index,
        start: p.start,
        size: p.size,
        type: p.type,
        filesystem: p.filesystem,
        blockSize: p.blockSize,
        usedBytes: p.usedBytes,
        ...(p.copiedWholeBecause ? { copiedWholeBecause: p.copiedWholeBecause } : {}),
      })),
      usedRanges: layout.usedRanges,
      warnings: layout.warnings,
    };
  } catch (error) {
    if (options.strict) throw error;
    // A table that cannot be trusted: copy every byte rather than guess.
    return {
      ...base,
      identity,
      partitions: [],
      usedRanges: null,
      warnings: [
        `the layout of ${real} could not be read (${(error as Error).message}); every byte is backed up`,
      ],
    };
  }
}

/** The latest complete point of this source (the parent) and, when `resume`, an interrupted one to finish. */
export async function findRelatives(
  repo: Repository,
  identity: SourceIdentity,
  resume = true,
): Promise<{ parent: Manifest | null; checkpoint: Manifest | null }> {
  const { points } = await repo.listPoints();
  const same = points.filter((p) => p.source === identity.path && p.sourceSize === identity.size);
  const running = new Set((await runningBackups(repo.backend)).map((r) => r.pointId));
  const parent = same.filter((p) => p.complete).at(-1);
  const checkpoint = resume ? same.filter((p) => !p.complete && !running.has(p.id)).at(-1) : undefined;
  return {
    parent: parent ? await repo.loadManifest(parent.id) : null,
    checkpoint: checkpoint ? await repo.loadManifest(checkpoint.id) : null,
  };
}
