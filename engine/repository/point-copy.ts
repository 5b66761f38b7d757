// Copies a restore point from one repository into another (a local repository mirrored off site): the point's
// bytes are read from the source repository and written through a PointWriter into the target, so they are
// hashed with the target's keys and deduplicated against everything the target holds — only chunks the target
// lacks are stored. The copy keeps the point's time, source, layout and consistency; it gets the target's own
// id. The target's point has its own segments, written by the point writer (chunk ids are keyed per repository,
// so a source's segments could not be shared); a format 3 point of the source is read through its map alike. A point already copied (same source, size and time, complete) is not copied again.
import { RepositoryError } from './errors.ts';
import type { Manifest } from './manifest.ts';
import { PointWriter } from './point-writer.ts';
import type { Repository } from './repository.ts';
import { bit } from './segment.ts';

/** Bytes read from the source point at a time (its chunks are read in parallel inside). */
const READ_BYTES = 4 * 1024 * 1024;

export interface CopyOutcome {
  from: string;
  /** The point's id in the target. */
  to: string;
  /** True when the target already held it. */
  alreadyThere: boolean;
  storedBytes: number;
  usedBytes: number;
}

export interface CopyOptions {
  signal?: AbortSignal;
  onProgress?: (progress: { doneBytes: number; totalBytes: number }) => void;
}

/**
 * The point's used byte ranges (merged, in order), read from its map a segment at a time: a format 4 point's
 * used map lives in its segments, never whole in memory.
 */
async function usedRangesOf(
  repo: Repository,
  manifest: Manifest,
): Promise<{ start: number; length: number }[]> {
  const ranges: { start: number; length: number }[] = [];
  const { unitSize } = manifest;
  const size = manifest.source.size;
  const map = await repo.openMap(manifest);
  for await (const { firstUnit, segment } of map.segments()) {
    for (let u = 0; u < segment.unitCount; u++) {
      if (!bit(segment.used, u)) continue;
      const start = (firstUnit + u) * unitSize;
      const end = Math.min(size, start + unitSize);
      const last = ranges[ranges.length - 1];
      if (last && last.start + last.length === start) last.length = end - last.start;
      else ranges.push({ start, length: end - start });
    }
  }
  return ranges;
}

export async function copyPoint(
  from: Repository,
  to: Repository,
  pointId: string,
  options: CopyOptions = {},
): Promise<CopyOutcome> {
  const manifest = await from.loadManifest(pointId);
  if (!manifest.complete) {
    throw new RepositoryError(
      `point ${pointId} is incomplete (its backup was interrupted): it cannot be copied`,
    );
  }
  if (manifest.unitSize !== to.chunkSize) {
    throw new RepositoryError(
      `point ${pointId} is cut in ${manifest.unitSize >> 10} KiB units, repository ${to.path} in ${to.chunkSize >> 10} KiB ones: copy into a repository made with 'init --chunk-size ${manifest.unitSize >> 10}K'`,
    );
  }
  const sameSource = (await to.listPoints()).points.filter(
    (p) => p.complete && p.source === manifest.source.path && p.sourceSize === manifest.source.size,
  );
  const copied = sameSource.find((p) => p.time === manifest.time);
  if (copied) {
    return {
      from: pointId,
      to: copied.id,
      alreadyThere: true,
      storedBytes: 0,
      usedBytes: manifest.stats.usedBytes,
    };
  }
  const earlier = sameSource.filter((p) => p.time < manifest.time).at(-1);
  const parent: Manifest | null = earlier ? await to.loadManifest(earlier.id) : null;
  const usedRanges = await usedRangesOf(from, manifest);
  const writer = await PointWriter.create(to, {
    source: manifest.source,
    partitions: manifest.partitions,
    usedRanges,
    consistency: manifest.consistency,
    time: manifest.time,
    parent,
  });
  try {
    const reader = await from.openPoint(pointId);
    const ranges = writer.rangesToRead();
    const totalBytes = ranges.reduce((sum, range) => sum + range.length, 0);
    let doneBytes = 0;
    for (const range of ranges) {
      for (let offset = range.start; offset < range.start + range.length; offset += READ_BYTES) {
        options.signal?.throwIfAborted();
        const length = Math.min(READ_BYTES, range.start + range.length - offset);
        const data = await reader.read(offset, length);
        for (let at = 0; at < data.length; at += manifest.unitSize) {
          await writer.writeUnit(
            offset + at,
            data.subarray(at, Math.min(at + manifest.unitSize, data.length)),
          );
        }
        doneBytes += length;
        options.onProgress?.({ doneBytes, totalBytes });
      }
    }
    await writer.finish();
  } catch (error) {
    await writer.abort(error as Error);
    throw error;
  }
  return {
    from: pointId,
    to: writer.result.id,
    alreadyThere: false,
    storedBytes: writer.result.stats.storedBytes,
    usedBytes: writer.result.stats.usedBytes,
  };
}
