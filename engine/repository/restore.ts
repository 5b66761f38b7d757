// Writes a restore point back to a BlockWriter: the partition table, boot area and partitions as the used map
// says. Only used units are written; on a device the used all-zero units are written as zeros, on an image the
// caller starts from an all-zero (sparse) file so they are skipped. If it is interrupted, the target holds a
// mix of old and restored data: run it again (restores are idempotent).
import type { BlockWriter } from '../device/types.ts';
import { DamagedRepositoryError, RepositoryError } from './errors.ts';
import { isUsed, type Manifest } from './manifest.ts';
import { packFileName } from './pack.ts';
import type { Repository } from './repository.ts';

/** Bytes per write to the target: consecutive units are gathered into one write. */
const WRITE_BYTES = 4 * 1024 * 1024;
/** Chunk reads in flight (they decode on the main thread; reading ahead hides storage latency). */
const READS_AHEAD = 64;

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
  const units: number[] = [];
  for (let unit = 0; unit < unitCount; unit++) {
    if (!isUsed(manifest, unit)) continue;
    if (manifest.units[unit] === 0 && options.targetIsZeroed) continue;
    units.push(unit);
  }
  const unitLength = (unit: number) => Math.min(unitSize, size - unit * unitSize);
  const totalBytes = units.reduce((sum, unit) => sum + unitLength(unit), 0);
  const zeros = Buffer.alloc(unitSize);
  const fetch = (unit: number): Promise<Buffer> => {
    const k = manifest.units[unit]!;
    return k === 0
      ? Promise.resolve(zeros.subarray(0, unitLength(unit)))
      : repo.readChunk(manifest.chunkIds[k - 1]!);
  };
  const inFlight: Promise<Buffer>[] = [];
  let next = 0;
  const fill = () => {
    while (inFlight.length < READS_AHEAD && next < units.length) {
      const p = fetch(units[next++]!);
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
  for (let i = 0; i < units.length; i++) {
    const unit = units[i]!;
    const data = await inFlight.shift()!;
    fill();
    if (data.length !== unitLength(unit)) {
      throw new RepositoryError(
        `chunk of unit ${unit} of point ${manifest.id} has ${data.length} bytes, expected ${unitLength(unit)}`,
        4,
      );
    }
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
  await flushBatch();
  await target.flush();
  let usedBytes = 0;
  for (let unit = 0; unit < unitCount; unit++) if (isUsed(manifest, unit)) usedBytes += unitLength(unit);
  return { writtenBytes: doneBytes, usedBytes };
}
