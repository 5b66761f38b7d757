// `diskline backup <source> --repo R`: one restore point of a disk or image. Reads the used units through a
// snapshot session (with no writers to intercept for an image or an unmounted device), deduplicates against
// the repository, resumes an interrupted backup of the same source, and prints the point and its stats.
import { readFile, realpath, stat } from 'node:fs/promises';
import { MemoryContainer } from '../../container/memory.ts';
import { deviceUses } from '../../device/busy.ts';
import { openReader } from '../../device/open.ts';
import { kernelName, parentDisk } from '../../device/sysfs.ts';
import type { BlockReader, ByteRange } from '../../device/types.ts';
import { readPartitionTable } from '../../partition/read.ts';
import { runningBackups } from '../../repository/locks.ts';
import type { PartitionRecord, SourceIdentity } from '../../repository/manifest.ts';
import { PointWriter } from '../../repository/point-writer.ts';
import type { Repository } from '../../repository/repository.ts';
import { SnapshotSession } from '../../snapshot/session.ts';
import {
  formatBytes,
  openRepository,
  progressLine,
  repositoryHelp,
  repositoryOptions,
} from '../repository-access.ts';
import { ExitCode, ExitError, parseVerbArgs, UsageError, type Verb } from '../verb.ts';

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

/** Partitions and used ranges of the source. Without a file-system reader for a partition, all of it counts as used. */
async function sourceLayout(
  reader: BlockReader,
): Promise<{
  table: SourceIdentity['partitionTable'];
  partitions: PartitionRecord[];
  usedRanges: ByteRange[] | null;
}> {
  try {
    const table = await readPartitionTable(reader);
    return {
      table: table.kind,
      partitions: table.partitions.map((p) => ({
        index: p.index,
        start: p.start,
        size: p.size,
        type: p.type,
        filesystem: null,
        blockSize: table.sectorSize,
        usedBytes: p.size,
      })),
      usedRanges: null,
    };
  } catch {
    return { table: null, partitions: [], usedRanges: null };
  }
}

/** The latest complete point of this source (the parent) and an interrupted one to resume. */
async function relatives(repo: Repository, identity: SourceIdentity, resume: boolean) {
  const { points } = await repo.listPoints();
  const same = points.filter((p) => p.source === identity.path && p.sourceSize === identity.size);
  const running = new Set((await runningBackups(repo.backend)).map((r) => r.pointId));
  const parentSummary = same.filter((p) => p.complete).at(-1);
  const checkpoint = resume ? same.filter((p) => !p.complete && !running.has(p.id)).at(-1) : undefined;
  return {
    parent: parentSummary ? await repo.loadManifest(parentSummary.id) : null,
    checkpoint: checkpoint ? await repo.loadManifest(checkpoint.id) : null,
  };
}

export const verb: Verb = {
  usage: 'backup <source> --repo R [--json] [--no-resume]',
  summary: 'Back up a disk or image into a new restore point',
  help:
    `${repositoryHelp}\n  --json                 print {point, stats} when done\n` +
    '  --no-resume            start afresh even if an interrupted backup of this source exists',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      ...repositoryOptions,
      json: { type: 'boolean' },
      'no-resume': { type: 'boolean' },
    });
    const [source, ...extra] = positionals;
    if (!source) throw new UsageError('which disk or image? give the source path');
    if (extra.length) throw new UsageError(`unexpected argument '${extra[0]}'`);
    const repo = await openRepository(values);
    const reader = await openReader(source);
    try {
      const identity = await sourceIdentity(source, reader);
      const layout = await sourceLayout(reader);
      identity.partitionTable = layout.table;
      const mounted = identity.isDevice ? await deviceUses(identity.path) : [];
      const consistency = mounted.length > 0 ? 'crash-consistent' : 'offline';
      if (mounted.length > 0 && !values.json) {
        process.stderr.write(
          `warning: ${identity.path} is in use (${mounted.join('; ')}); without the tap this point is only crash-consistent\n`,
        );
      }
      const { parent, checkpoint } = await relatives(repo, identity, !values['no-resume']);
      const { isDevice: _isDevice, ...sourceRecord } = identity;
      const progress = values.json ? null : progressLine('backup');
      const writer = await PointWriter.create(repo, {
        source: sourceRecord,
        partitions: layout.partitions,
        usedRanges: layout.usedRanges,
        consistency,
        parent,
        resume: checkpoint,
        onProgress: (p) => progress?.update(p.doneBytes, p.totalBytes),
      });
      if (checkpoint && !values.json) process.stderr.write(`resuming interrupted backup ${checkpoint.id}\n`);
      const session = new SnapshotSession({
        reader,
        usedRanges: layout.usedRanges ?? [{ start: 0, length: reader.size }],
        unitSize: repo.chunkSize,
        container: new MemoryContainer({ capacityBytes: 64 * repo.chunkSize, slotSize: repo.chunkSize }),
        sink: writer,
        onlyRanges: writer.rangesToRead(),
      });
      const interrupt = () =>
        session.cancel('interrupted by a signal; run the same backup again to resume it');
      process.once('SIGINT', interrupt);
      process.once('SIGTERM', interrupt);
      session.arm();
      try {
        await session.run();
      } catch (error) {
        throw new ExitError(
          `backup of ${identity.path} stopped: ${(error as Error).message}`,
          ExitCode.failed,
        );
      } finally {
        process.off('SIGINT', interrupt);
        process.off('SIGTERM', interrupt);
        progress?.end();
      }
      const manifest = writer.result;
      if (values.json) {
        process.stdout.write(
          `${JSON.stringify({ point: repo.summarize(manifest), stats: manifest.stats })}\n`,
        );
      } else {
        const s = manifest.stats;
        process.stdout.write(
          `Restore point ${manifest.id} of ${identity.path}: used ${formatBytes(s.usedBytes)}, changed ${formatBytes(s.changedBytes)}, ` +
            `stored ${formatBytes(s.storedBytes)} (${s.newChunks} new chunks)\n`,
        );
      }
      return ExitCode.ok;
    } finally {
      await reader.close();
      await repo.close();
    }
  },
};
