// The backup job: one restore point of a disk or image file. The source is described by the repository's
// point-source (identity, partitions, the used ranges the layout inspector finds), read through a snapshot
// session (its block map and container state feed the job's progress) and deduplicated into the repository by
// the point writer; an interrupted backup of the same source is resumed, the latest complete point is the
// parent. Without the tap attached to the source there are no writers to intercept: an image file or an
// unmounted device gives an 'offline' point, a mounted device a 'crash-consistent' one. With the tap attached,
// the backup takes a consistent point through it (freeze, arm, thaw) while the volume stays in use, lists the
// used blocks from the snapshot itself, and gives a 'frozen' point (or 'crash-consistent' when nothing mounted
// could be frozen).
import type { ContainerSpec } from '../../protocol/model.ts';
import { FileContainer } from '../container/file.ts';
import { MemoryContainer } from '../container/memory.ts';
import type { IntermediateContainer } from '../container/types.ts';
import { openReader } from '../device/open.ts';
import type { BlockReader } from '../device/types.ts';
import type { Manifest } from '../repository/manifest.ts';
import { describeSource, findRelatives } from '../repository/point-source.ts';
import { PointWriter } from '../repository/point-writer.ts';
import type { SnapshotProvider } from '../snapshot/provider.ts';
import { SnapshotSession } from '../snapshot/session.ts';
import type { UnitSink } from '../snapshot/types.ts';
import type { AttachedVolume } from '../tap/attach.ts';
import { changesSinceParent } from '../tap/change-tracking.ts';
import { TapProvider } from '../tap/provider.ts';
import type { JobContext } from './manager.ts';
import { withRepository } from './repository-access.ts';
import type { BlockMapProvider } from './runners.ts';
import { copyProgress, providerFor } from './snapshot-provider.ts';

/** Container used when the request names none: RAM enough for 64 MiB of preserved units. */
const DEFAULT_CONTAINER_BYTES = 64 << 20;

/** Time between checkpoints of a running backup; DISKLINE_CHECKPOINT_MS overrides the writer's default. */
function checkpointInterval(): number | undefined {
  const text = process.env.DISKLINE_CHECKPOINT_MS;
  return text && /^\d+$/.test(text) ? Number(text) : undefined;
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
  volume: AttachedVolume | null;
  /** Attached volumes: run before the freeze / after the thaw (docs/consistent-points.md). */
  preHook?: string | undefined;
  postHook?: string | undefined;
  /** Start afresh: an interrupted backup of this source is not taken over. */
  noResume?: boolean | undefined;
  /** Refuse a source whose used map cannot be trusted (damaged allocation records) instead of copying it whole. */
  strict?: boolean | undefined;
}

/** A sink whose target (the point writer) is known only after the consistent point; units come later. */
class DeferredSink implements UnitSink {
  target: UnitSink | null = null;
  #need(): UnitSink {
    if (!this.target)
      throw new Error('the backup wrote a unit before its point writer was ready (engine bug)');
    return this.target;
  }
  writeUnit(offset: number, data: Buffer): Promise<void> {
    return this.#need().writeUnit(offset, data);
  }
  finish(): Promise<void> {
    return this.#need().finish();
  }
  async abort(reason: Error): Promise<void> {
    await this.target?.abort(reason);
  }
}

/** Reads the disk as it was at the consistent point (what the session is capturing). */
function snapshotReader(reader: BlockReader, session: SnapshotSession): BlockReader {
  return {
    path: reader.path,
    size: reader.size,
    logicalSectorSize: reader.logicalSectorSize,
    read: (offset, length) => session.readSnapshot(offset, length),
    close: async () => {},
  };
}

function progressReporter(
  session: SnapshotSession,
  context: JobContext,
  provider?: SnapshotProvider,
): () => void {
  return () => {
    const stats = session.stats();
    const store = provider?.store();
    context.progress({
      doneBytes: stats.bytesCopied,
      totalBytes: stats.totalBytes,
      // Under device-mapper the store that fills is the snapshot's, not the session's container.
      container: store ? { ...stats.container, ...store } : stats.container,
      units: stats.units,
      unitSize: stats.unitSize,
    });
  };
}

async function runProvidedBackup(
  repo: Parameters<Parameters<typeof withRepository>[1]>[0],
  provider: SnapshotProvider,
  params: BackupParams,
  context: JobContext,
  publishBlockMap: (provider: BlockMapProvider) => void,
): Promise<Record<string, unknown>> {
  const reader = provider.reader;
  // Under device-mapper the kernel keeps the old chunks: the session's container is never written.
  const container = provider.interceptsWrites
    ? await openContainer(params.container, repo.chunkSize).catch(async (error: unknown) => {
        await provider.release();
        throw error;
      })
    : new MemoryContainer({ capacityBytes: repo.chunkSize, slotSize: repo.chunkSize });
  const sink = new DeferredSink();
  // The whole disk is protected from the freeze on; the capture narrows to the used blocks once they are
  // listed from the consistent point itself (blocks allocated between a listing and the freeze cannot be missed).
  const session = new SnapshotSession({
    reader,
    usedRanges: [{ start: 0, length: reader.size }],
    unitSize: repo.chunkSize,
    container,
    sink,
    ...(provider.settleUnits
      ? { onSettle: (firstUnit: number, count: number) => provider.settleUnits?.(firstUnit, count) }
      : {}),
  });
  const report = progressReporter(session, context, provider);
  session.on('progress', report);
  const cancel = () => session.cancel('the backup was cancelled');
  context.signal.addEventListener('abort', cancel, { once: true });
  // A cancel that came while the backup was being set up has already fired its 'abort' event.
  if (context.signal.aborted) cancel();
  publishBlockMap(session);
  const upkeep = new AbortController();
  try {
    const point = await provider.takePoint(session);
    const tracking = provider instanceof TapProvider ? (provider.lastPoint?.tracking ?? null) : null;
    const source = await describeSource(provider.source, snapshotReader(reader, session), {
      strict: params.strict ?? false,
    });
    // No resume: a checkpoint belongs to an earlier consistent point of a disk that has changed since.
    const { parent } = await findRelatives(repo, source.identity, false);
    // Changed-block tracking: when the tap's changes are relative to the parent point, read only those.
    const changes = changesSinceParent(tracking, parent?.trackingGeneration);
    const writer = await PointWriter.create(repo, {
      source: source.identity,
      partitions: source.partitions,
      usedRanges: source.usedRanges,
      consistency: point.consistency,
      parent,
      changedRanges: parent ? changes.ranges : null,
      trackingGeneration: tracking?.newGeneration || null,
      checkpointIntervalMs: checkpointInterval(),
    });
    sink.target = writer;
    try {
      session.restrictTo(writer.rangesToRead());
    } catch (error) {
      await writer.abort(error as Error);
      throw error;
    }
    context.signal.throwIfAborted();
    const watching = provider.watch?.(copyProgress(session), upkeep.signal).catch((error: Error) => {
      session.cancel(error.message);
      throw error;
    });
    await session.run();
    upkeep.abort();
    await watching;
    report();
    const manifest: Manifest = writer.result;
    return {
      point: manifest.id,
      resumed: null,
      parent: parent?.id ?? null,
      provider: provider.kind,
      consistency: manifest.consistency,
      frozen: point.frozenMountPoints,
      frozenMs: point.frozenMs,
      ...manifest.stats,
      changeTracking: changes.reason ? `read everything: ${changes.reason}` : 'read only the changed blocks',
      warnings: [
        ...point.notes,
        ...source.warnings,
        ...(parent && changes.reason ? [`read the whole volume: ${changes.reason}`] : []),
      ],
    };
  } finally {
    upkeep.abort();
    context.signal.removeEventListener('abort', cancel);
    await provider.release();
    await container.close();
  }
}

export async function runBackup(
  params: BackupParams,
  context: JobContext,
  publishBlockMap: (provider: BlockMapProvider) => void,
): Promise<Record<string, unknown>> {
  return withRepository(params.repo, async (repo) => {
    const provider = await providerFor(params);
    if (provider) return runProvidedBackup(repo, provider, params, context, publishBlockMap);
    const reader = await openReader(params.source);
    try {
      const source = await describeSource(params.source, reader, { strict: params.strict ?? false });
      const { parent, checkpoint } = await findRelatives(repo, source.identity, !params.noResume);
      const writer = await PointWriter.create(repo, {
        source: source.identity,
        partitions: source.partitions,
        usedRanges: source.usedRanges,
        consistency: source.consistency,
        parent,
        resume: checkpoint,
        contentStamp: source.contentStamp,
        checkpointIntervalMs: checkpointInterval(),
      });
      const container = await openContainer(params.container, repo.chunkSize);
      const session = new SnapshotSession({
        reader,
        usedRanges: source.usedRanges ?? [{ start: 0, length: reader.size }],
        unitSize: repo.chunkSize,
        container,
        sink: writer,
        onlyRanges: writer.rangesToRead(),
      });
      const report = progressReporter(session, context);
      session.on('progress', report);
      const cancel = () =>
        session.cancel('the backup was cancelled; start it again to resume where it stopped');
      context.signal.addEventListener('abort', cancel, { once: true });
      // A cancel that came while the backup was being set up has already fired its 'abort' event.
      if (context.signal.aborted) cancel();
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
      const resumed = writer.resumed;
      return {
        point: manifest.id,
        resumed: resumed?.checkpoint ?? null,
        reusedUnits: resumed?.reusedUnits ?? 0,
        parent: parent?.id ?? null,
        consistency: manifest.consistency,
        ...manifest.stats,
        warnings: [
          ...(resumed?.rereadBecause
            ? [`the interrupted backup was finished by reading everything again: ${resumed.rereadBecause}`]
            : []),
          ...source.warnings,
          ...(source.inUse.length
            ? [
                `${source.identity.path} was in use (${source.inUse.join('; ')}) and not attached: the point is only crash-consistent.`,
              ]
            : []),
        ],
      };
    } finally {
      await reader.close();
    }
  });
}
