// The backup job: one restore point of a disk or image file. The source is described by the repository's
// point-source (identity, partitions, the used ranges the layout inspector finds), read through a snapshot
// session (its block map and container state feed the job's progress) and deduplicated into the repository by
// the point writer; an interrupted backup of the same source is resumed, the latest complete point is the
// parent. Without the tap attached to the source there are no writers to intercept: an image file or an
// unused device gives an 'offline' point; a device in use is refused (backup-source.ts) unless the caller
// accepts a 'crash-consistent' point. The container is the caller's (container/open.ts). With a snapshot
// provider (jobs/snapshot-provider.ts: the tap for an attached volume, device-mapper for a mapped device in use)
// the backup takes a consistent point through it while the volume stays in use, lists the used blocks from the
// snapshot itself, and gives a 'frozen' point (or 'crash-consistent' when nothing mounted could be frozen).
import { realpath } from 'node:fs/promises';
import type { ContainerSpec } from '../../protocol/model.ts';
import { MemoryContainer } from '../container/memory.ts';
import { openContainer } from '../container/open.ts';
import { openReader } from '../device/open.ts';
import type { BlockReader } from '../device/types.ts';
import { FilesystemDamagedError } from '../filesystems/types.ts';
import { heldNameOf } from '../handles/held-path.ts';
import type { Manifest } from '../repository/manifest.ts';
import { describeSource, findRelatives } from '../repository/point-source.ts';
import { PointWriter } from '../repository/point-writer.ts';
import type { SnapshotProvider } from '../snapshot/provider.ts';
import { SnapshotSession } from '../snapshot/session.ts';
import type { UnitSink } from '../snapshot/types.ts';
import type { AttachedVolume } from '../tap/attach.ts';
import { changesSinceParent } from '../tap/change-tracking.ts';
import { TapProvider } from '../tap/provider.ts';
import { checkUnprotectedSource } from './backup-source.ts';
import type { JobContext } from './manager.ts';
import { withRepository } from './repository-access.ts';
import type { BlockMapProvider } from './runners.ts';
import { copyProgress, providerFor } from './snapshot-provider.ts';

/** Time between checkpoints of a running backup; DISKLINE_CHECKPOINT_MS overrides the writer's default. */
function checkpointInterval(): number | undefined {
  const text = process.env.DISKLINE_CHECKPOINT_MS;
  return text && /^\d+$/.test(text) ? Number(text) : undefined;
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
  /** Back up a device in use without the tap anyway, as a crash-consistent point (otherwise refused). */
  allowInconsistent?: boolean | undefined;
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

/** The source described; under --strict a used map that cannot be trusted refuses the backup, as damage. */
async function describeStrictly(path: string, reader: BlockReader, strict = false) {
  try {
    return await describeSource(path, reader, { strict });
  } catch (error) {
    if (strict && error instanceof FilesystemDamagedError) {
      throw new FilesystemDamagedError(`refused (--strict): ${error.message}`);
    }
    // A held source removed as the backup started: its descriptor's name ends in " (deleted)", which the caller
    // never gave. Say it by the name they did.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new Error(
        `the source ${heldNameOf(path) ?? path} was removed as the backup started; nothing was stored`,
      );
    throw error;
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
  // Under device-mapper the kernel keeps the old chunks: the session's container is never written.
  const container = provider.interceptsWrites
    ? await openContainer(params.container, {
        slotSize: repo.chunkSize,
        sourcePath: await realpath(params.source).catch(() => params.source),
        repositoryPath: params.repo,
      })
    : new MemoryContainer({ capacityBytes: repo.chunkSize, slotSize: repo.chunkSize });
  const reader = provider.reader;
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
    const source = await describeStrictly(params.source, snapshotReader(reader, session), params.strict);
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
  // The tap for an attached volume, device-mapper for a mapped device in use, none for the rest.
  const provider = await providerFor(params);
  // Checked before the repository is opened: a refused backup writes nothing.
  const inUse = provider
    ? []
    : await checkUnprotectedSource(params.source, params.allowInconsistent === true);
  if (provider) {
    try {
      return await withRepository(params.repo, (repo) =>
        runProvidedBackup(repo, provider, params, context, publishBlockMap),
      );
    } finally {
      // Released by the run; again here (a no-op then) when the repository could not be opened.
      await provider.release();
    }
  }
  return withRepository(params.repo, async (repo) => {
    const container = await openContainer(params.container, {
      slotSize: repo.chunkSize,
      // A held source (/proc/PID/fd/N) is named, and compared, by the node it leads to.
      sourcePath: await realpath(params.source).catch(() => params.source),
      repositoryPath: params.repo,
    });
    let reader: BlockReader | null = null;
    try {
      reader = await openReader(params.source);
      const source = await describeStrictly(params.source, reader, params.strict);
      const { parent, checkpoint } = await findRelatives(repo, source.identity, !params.noResume);
      const writer = await PointWriter.create(repo, {
        source: source.identity,
        partitions: source.partitions,
        usedRanges: source.usedRanges,
        consistency: inUse.length > 0 ? 'crash-consistent' : source.consistency,
        parent,
        resume: checkpoint,
        contentStamp: source.contentStamp,
        checkpointIntervalMs: checkpointInterval(),
      });
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
          ...(inUse.length
            ? [
                `${source.identity.path} was in use (${inUse.join('; ')}) and not attached: the point is only crash-consistent.`,
              ]
            : []),
        ],
      };
    } finally {
      await container.close();
      await reader?.close();
    }
  });
}
