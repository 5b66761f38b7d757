// The backup job: one restore point of a disk or image file. The source is read through a snapshot session
// (its block map and container state feed the job's progress), deduplicated into the repository by the point
// writer; an interrupted backup of the same source is resumed, the latest complete point is the parent.
// Without the tap attached to the source there are no writers to intercept: an image file or an unmounted
// device gives an 'offline' point, a mounted device a 'crash-consistent' one.
import { readFile, realpath, stat } from 'node:fs/promises';
import type { ContainerSpec } from '../../protocol/model.ts';
import type { BlockMapProvider } from '../api/engine.ts';
import { FileContainer } from '../container/file.ts';
import { MemoryContainer } from '../container/memory.ts';
import type { IntermediateContainer } from '../container/types.ts';
import { deviceUses } from '../device/busy.ts';
import { openReader } from '../device/open.ts';
import { kernelName, parentDisk } from '../device/sysfs.ts';
import type { BlockReader, ByteRange } from '../device/types.ts';
import { inspectDisk } from '../layout/inspect.ts';
import { readPartitionTable } from '../partition/read.ts';
import { runningBackups } from '../repository/locks.ts';
import type { Manifest, PartitionRecord, SourceIdentity } from '../repository/manifest.ts';
import { PointWriter } from '../repository/point-writer.ts';
import type { Repository } from '../repository/repository.ts';
import { SnapshotSession } from '../snapshot/session.ts';
import type { JobContext } from './manager.ts';
import { withRepository } from './repository-access.ts';

/** Container used when the request names none: RAM enough for 64 MiB of preserved units. */
const DEFAULT_CONTAINER_BYTES = 64 << 20;

/** Time between checkpoints of a running backup; DISKLINE_CHECKPOINT_MS overrides the writer's default. */
function checkpointInterval(): number | undefined {
  const text = process.env.DISKLINE_CHECKPOINT_MS;
  return text && /^\d+$/.test(text) ? Number(text) : undefined;
}

async function sysText(path: string): Promise<string | null> {
  const text = await readFile(path, 'utf8').catch(() => null);
  return text?.trim() || null;
}

async function sourceIdentity(
  path: string,
  reader: BlockReader,
): Promise<SourceIdentity & { isDevice: boolean }> {
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
  return { path: real, model, serial, size: reader.size, partitionTable: null, isDevice };
}

/**
 * Partitions of the source and the byte ranges its file systems use (the layout inspector); if the source
 * cannot be inspected, the partition table alone with every byte counted as used.
 */
async function sourceLayout(reader: BlockReader): Promise<{
  table: SourceIdentity['partitionTable'];
  partitions: PartitionRecord[];
  usedRanges: ByteRange[] | null;
  warnings: string[];
}> {
  try {
    const disk = await inspectDisk(reader);
    return {
      table: disk.partitionTable,
      partitions: disk.partitions.map((partition) => ({
        index: partition.index,
        start: partition.start,
        size: partition.size,
        type: partition.type,
        filesystem: partition.filesystem,
        blockSize: partition.blockSize,
        usedBytes: partition.usedBytes,
      })),
      usedRanges: disk.usedRanges,
      warnings: disk.warnings,
    };
  } catch (error) {
    const warning = `The layout of ${reader.path} could not be read (${(error as Error).message}); every byte is copied.`;
    try {
      const table = await readPartitionTable(reader);
      return {
        table: table.kind,
        partitions: table.partitions.map((partition) => ({
          index: partition.index,
          start: partition.start,
          size: partition.size,
          type: partition.type,
          filesystem: null,
          blockSize: table.sectorSize,
          usedBytes: partition.size,
        })),
        usedRanges: null,
        warnings: [warning],
      };
    } catch {
      return { table: null, partitions: [], usedRanges: null, warnings: [warning] };
    }
  }
}

async function relatives(repo: Repository, identity: SourceIdentity) {
  const { points } = await repo.listPoints();
  const same = points.filter((point) => point.source === identity.path && point.sourceSize === identity.size);
  const running = new Set((await runningBackups(repo.backend)).map((registration) => registration.pointId));
  const parent = same.filter((point) => point.complete).at(-1);
  const checkpoint = same.filter((point) => !point.complete && !running.has(point.id)).at(-1);
  return {
    parent: parent ? await repo.loadManifest(parent.id) : null,
    checkpoint: checkpoint ? await repo.loadManifest(checkpoint.id) : null,
  };
}

async function openContainer(
  spec: ContainerSpec | undefined,
  slotSize: number,
): Promise<IntermediateContainer> {
  const capacityBytes = Math.max(spec?.capacityBytes ?? DEFAULT_CONTAINER_BYTES, slotSize);
  if (!spec || spec.kind === 'memory') return new MemoryContainer({ capacityBytes, slotSize });
  if (spec.kind === 'file' && spec.path)
    return FileContainer.create({ path: spec.path, capacityBytes, slotSize });
  throw new Error(
    `A ${spec.kind} container${spec.path ? ` at ${spec.path}` : ''} cannot be used for this backup; choose a memory or file container.`,
  );
}

export interface BackupParams {
  source: string;
  repo: string;
  container: ContainerSpec | undefined;
}

export async function runBackup(
  params: BackupParams,
  context: JobContext,
  publishBlockMap: (provider: BlockMapProvider) => void,
): Promise<Record<string, unknown>> {
  return withRepository(params.repo, async (repo) => {
    const reader = await openReader(params.source);
    try {
      const identity = await sourceIdentity(params.source, reader);
      const layout = await sourceLayout(reader);
      identity.partitionTable = layout.table;
      const mounted = identity.isDevice ? await deviceUses(identity.path) : [];
      const { parent, checkpoint } = await relatives(repo, identity);
      const { isDevice: _isDevice, ...sourceRecord } = identity;
      const writer = await PointWriter.create(repo, {
        source: sourceRecord,
        partitions: layout.partitions,
        usedRanges: layout.usedRanges,
        consistency: mounted.length > 0 ? 'crash-consistent' : 'offline',
        parent,
        resume: checkpoint,
        checkpointIntervalMs: checkpointInterval(),
      });
      const container = await openContainer(params.container, repo.chunkSize);
      const session = new SnapshotSession({
        reader,
        usedRanges: layout.usedRanges ?? [{ start: 0, length: reader.size }],
        unitSize: repo.chunkSize,
        container,
        sink: writer,
        onlyRanges: writer.rangesToRead(),
      });
      const report = () => {
        const stats = session.stats();
        context.progress({
          doneBytes: stats.bytesCopied,
          totalBytes: stats.totalBytes,
          container: stats.container,
          units: stats.units,
          unitSize: stats.unitSize,
        });
      };
      session.on('progress', report);
      const cancel = () =>
        session.cancel('the backup was cancelled; start it again to resume where it stopped');
      context.signal.addEventListener('abort', cancel, { once: true });
      publishBlockMap(session);
      try {
        session.arm();
        await session.run();
        report();
      } finally {
        context.signal.removeEventListener('abort', cancel);
        await container.close();
      }
      const manifest: Manifest = writer.result;
      return {
        point: manifest.id,
        resumed: checkpoint?.id ?? null,
        parent: parent?.id ?? null,
        consistency: manifest.consistency,
        ...manifest.stats,
        warnings: mounted.length
          ? [
              `${identity.path} was in use (${mounted.join('; ')}) and not attached: the point is only crash-consistent.`,
            ]
          : [],
      };
    } finally {
      await reader.close();
    }
  });
}
