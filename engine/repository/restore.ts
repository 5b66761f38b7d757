// Writes a restore point back to a BlockWriter: the partition table, boot area and partitions as the used map
// says. Only used units are written; on a device the used all-zero units are written as zeros, on an image the
// caller starts from an all-zero (sparse) file so they are skipped. If it is interrupted, the target holds a
// mix of old and restored data: run it again (restores are idempotent).
import type { BlockWriter } from '../device/types.ts';
import { BLOB_HEADER_BYTES, DamagedChunkError, decodeChunk } from './chunk-codec.ts';
import { headerOffsetOf, type IndexEntry } from './chunk-index.ts';
import { DamagedRepositoryError, RepositoryError } from './errors.ts';
import { isUsed, type Manifest } from './manifest.ts';
import { packFileName } from './pack.ts';
import type { Repository } from './repository.ts';

/** Bytes per write to the target: consecutive units are gathered into one write. */
const WRITE_BYTES = 4 * 1024 * 1024;
/** Largest single read from a pack: a run of blobs that lie back to back. */
const SPAN_BYTES = 8 * 1024 * 1024;
/** Span reads in flight (they decode on the main thread; reading ahead hides storage latency). */
const SPANS_AHEAD = 4;

interface Span {
  /** null: a run of all-zero units. */
  pack: string | null;
  start: number;
  end: number;
  units: { unit: number; id: Buffer | null; entry: IndexEntry | null }[];
}

export interface RestoreOptions {
  /** The target starts all zero (a freshly emptied image): zero units need not be written. */
  targetIsZeroed: boolean;
  onProgress?: (progress: { doneBytes: number; totalBytes: number }) => void;
}

export interface RestoreResult {
  writtenBytes: number;
  usedBytes: number;
}

/**
 * Before a byte is written: every chunk of the point is in the index and every pack holding one is there and
 * long enough. Damage inside a pack (flipped bytes) is found only when the chunk is read.
 */
export async function checkChunksPresent(repo: Repository, manifest: Manifest): Promise<void> {
  const index = await repo.loadIndex();
  const packEnds = new Map<string, number>();
  for (const id of manifest.chunkIds) {
    const entry = index.get(id);
    if (!entry) {
      throw new DamagedRepositoryError(
        `restore point ${manifest.id} is damaged: chunk ${id.toString('hex').slice(0, 16)} is not in the index; nothing was written`,
      );
    }
    packEnds.set(entry.pack, Math.max(packEnds.get(entry.pack) ?? 0, entry.offset + entry.storedLength));
  }
  for (const [pack, end] of packEnds) {
    const size = await repo.backend.size(packFileName(pack));
    if (size === null)
      throw new DamagedRepositoryError(
        `restore point ${manifest.id} is damaged: pack ${pack} is missing; nothing was written`,
      );
    if (size < end) {
      throw new DamagedRepositoryError(
        `restore point ${manifest.id} is damaged: pack ${pack} is truncated (${size} bytes); nothing was written`,
      );
    }
  }
}

export async function restorePoint(
  repo: Repository,
  manifest: Manifest,
  target: BlockWriter,
  options: RestoreOptions,
): Promise<RestoreResult> {
  if (!manifest.complete) {
    throw new RepositoryError(
      `restore point ${manifest.id} is incomplete (its backup was interrupted); it cannot be restored`,
    );
  }
  if (target.size < manifest.source.size) {
    throw new RepositoryError(
      `refusing to restore to ${target.path}: it holds ${target.size} bytes but point ${manifest.id} needs ${manifest.source.size}`,
      3,
    );
  }
  await checkChunksPresent(repo, manifest);
  const { unitSize, unitCount } = manifest;
  const size = manifest.source.size;
  const index = await repo.loadIndex();
  const unitLength = (unit: number) => Math.min(unitSize, size - unit * unitSize);
  // Plan: the units to write, in disk order, gathered into spans of blobs that lie back to back in one pack
  // (a backup writes a disk's chunks in disk order), so each span is one read.
  const spans: Span[] = [];
  let totalBytes = 0;
  for (let unit = 0; unit < unitCount; unit++) {
    if (!isUsed(manifest, unit)) continue;
    const k = manifest.units[unit]!;
    if (k === 0 && options.targetIsZeroed) continue;
    totalBytes += unitLength(unit);
    const id = k === 0 ? null : manifest.chunkIds[k - 1]!;
    const entry = id ? index.get(id)! : null;
    const last = spans.at(-1);
    const headerOffset = entry ? headerOffsetOf(entry) : 0;
    const fits =
      last &&
      ((entry === null && last.pack === null) ||
        (entry !== null &&
          last.pack === entry.pack &&
          last.end === headerOffset &&
          last.end - last.start < SPAN_BYTES));
    const span: Span = fits
      ? last
      : { pack: entry?.pack ?? null, start: headerOffset, end: headerOffset, units: [] };
    if (!fits) spans.push(span);
    span.units.push({ unit, id, entry });
    if (entry) span.end = entry.offset + entry.storedLength;
  }
  const zeros = Buffer.alloc(unitSize);
  // One read buffer per span in flight plus the one being written out, reused: fresh megabyte buffers cost
  // page faults on every read. (An unencrypted, uncompressed chunk is a view of it until copied out.)
  const spanBuffers = Array.from({ length: SPANS_AHEAD + 1 }, () =>
    Buffer.allocUnsafeSlow(SPAN_BYTES + 2 * unitSize),
  );
  let spanCount = 0;
  const readSpan = async (span: Span): Promise<Buffer[]> => {
    const into = spanBuffers[spanCount++ % spanBuffers.length]!;
    if (span.pack === null) return span.units.map((u) => zeros.subarray(0, unitLength(u.unit)));
    const name = packFileName(span.pack);
    const bytes = await repo.backend.getRange(name, span.start, span.end - span.start, into);
    if (bytes.length < span.end - span.start)
      throw new DamagedRepositoryError(`pack ${span.pack} is truncated`);
    return span.units.map(({ unit, id, entry }) => {
      const at = headerOffsetOf(entry!) - span.start;
      try {
        const data = decodeChunk(
          repo.keys,
          bytes.subarray(at, at + BLOB_HEADER_BYTES),
          bytes.subarray(at + BLOB_HEADER_BYTES, at + BLOB_HEADER_BYTES + entry!.storedLength),
          id!,
        );
        if (data.length !== unitLength(unit))
          throw new DamagedChunkError(`has ${data.length} bytes, expected ${unitLength(unit)}`);
        return data;
      } catch (error) {
        if (error instanceof DamagedChunkError)
          throw new DamagedRepositoryError(`pack ${span.pack}: ${error.message}`);
        throw error;
      }
    });
  };
  const inFlight: Promise<Buffer[]>[] = [];
  let next = 0;
  const fill = () => {
    while (inFlight.length < SPANS_AHEAD && next < spans.length) {
      const p = readSpan(spans[next++]!);
      p.catch(() => undefined);
      inFlight.push(p);
    }
  };
  let doneBytes = 0;
  let batchStart = -1;
  let batchUnits = 0;
  const batch = Buffer.allocUnsafe(WRITE_BYTES);
  let batchLength = 0;
  const flushBatch = async () => {
    if (batchLength === 0) return;
    await target.write(batchStart * unitSize, batch.subarray(0, batchLength));
    doneBytes += batchLength;
    options.onProgress?.({ doneBytes, totalBytes });
    batchLength = 0;
    batchUnits = 0;
  };
  fill();
  for (const span of spans) {
    const datas = await inFlight.shift()!;
    fill();
    for (const [i, { unit }] of span.units.entries()) {
      const data = datas[i]!;
      const contiguous =
        batchLength > 0 && batchStart + batchUnits === unit && batchLength + data.length <= WRITE_BYTES;
      if (!contiguous) {
        await flushBatch();
        batchStart = unit;
      }
      data.copy(batch, batchLength);
      batchLength += data.length;
      batchUnits += 1;
    }
  }
  await flushBatch();
  await target.flush();
  let usedBytes = 0;
  for (let unit = 0; unit < unitCount; unit++) if (isUsed(manifest, unit)) usedBytes += unitLength(unit);
  return { writtenBytes: doneBytes, usedBytes };
}
