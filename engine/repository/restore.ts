// Writes a restore point back to a BlockWriter: the partition table, boot area and partitions as the used map
// says. Only used units are written; on a device the used all-zero units are written as zeros, on an image the
// caller starts from an all-zero (sparse) file so they are skipped. If it is interrupted, the target holds a
// mix of old and restored data: run it again (restores are idempotent).
import { UnsafeFileError } from '../backend/types.ts';
import type { BlockWriter } from '../device/types.ts';
import { groupUnits, MAX_GROUP_BYTES, maxGroupBytes } from './chunk-codec.ts';
import type { IndexEntry } from './chunk-index.ts';
import { DamagedRepositoryError, RepositoryError } from './errors.ts';
import type { Manifest } from './manifest.ts';
import { PACK_HEADER_BYTES, packFileName, packHeaderProblem } from './pack.ts';
import type { Repository } from './repository.ts';
import { type Slot, SpanDecodePool } from './restore-pool.ts';
import { bit, chunkOf } from './segment.ts';

/** Largest single read from a pack (plus at most one group): a run of group blobs that lie back to back. */
const SPAN_BYTES = 8 * 1024 * 1024;
/** Decoded bytes per span, so they fit one output buffer (then the rest of its last group). */
const SPAN_OUTPUT_BYTES = 8 * 1024 * 1024;
/** Span writes to the target in flight at once. */
const WRITES_AHEAD = 3;

interface Span {
  /** null: a run of all-zero units. */
  pack: string | null;
  start: number;
  end: number;
  units: { unit: number; id: Buffer | null; entry: IndexEntry | null }[];
  /** The span's groups by their offset in the pack, numbered in the order they lie. */
  groups: Map<number, number>;
}

export interface RestoreOptions {
  /** The target starts all zero (a freshly emptied image): zero units need not be written. */
  targetIsZeroed: boolean;
  onProgress?: (progress: { doneBytes: number; totalBytes: number }) => void;
  /** Worker threads to decode on (0: the main thread decodes); default from the number of cores. */
  decodeThreads?: number;
  /** The caller has just run checkChunksPresent (before emptying the target): not done twice. */
  chunksChecked?: boolean;
  /** Only the units touching one of these byte ranges of the source are restored (a fitted restore's routes). */
  onlyRanges?: readonly { start: number; end: number }[];
}

/**
 * Whether a unit touches one of `ranges`; asked in ascending unit order (a cursor walks the ranges), and
 * starting over when asked about an earlier unit.
 */
function unitsTouching(
  ranges: readonly { start: number; end: number }[],
  unitSize: number,
): (unit: number) => boolean {
  const sorted = ranges.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
  let at = 0;
  let last = -1;
  return (unit) => {
    if (unit < last) at = 0;
    last = unit;
    const start = unit * unitSize;
    while (at < sorted.length && sorted[at]!.end <= start) at++;
    // Ranges ending before this unit are passed; one starting before its end touches it.
    for (let i = at; i < sorted.length && sorted[i]!.start < start + unitSize; i++)
      if (sorted[i]!.end > start) return true;
    return false;
  };
}

export interface RestoreResult {
  writtenBytes: number;
  usedBytes: number;
}

/**
 * Before a byte is written: every chunk of the point is in the index and every pack holding one is there, under
 * its own name (its header says) and long enough. Damage inside a pack (flipped bytes) is found only when the chunk is read.
 */
export async function checkChunksPresent(repo: Repository, manifest: Manifest): Promise<void> {
  const index = await repo.loadIndex();
  const packEnds = new Map<string, number>();
  const map = await repo.openMap(manifest);
  for await (const id of map.chunkIds()) {
    const entry = index.get(id);
    if (!entry) {
      throw new DamagedRepositoryError(
        `restore point ${manifest.id} is damaged: chunk ${id.toString('hex').slice(0, 16)} is not in the index; nothing was written`,
      );
    }
    packEnds.set(entry.pack, Math.max(packEnds.get(entry.pack) ?? 0, entry.blobOffset + entry.blobLength));
  }
  const damaged = (problem: string) =>
    new DamagedRepositoryError(`restore point ${manifest.id} is damaged: ${problem}; nothing was written`);
  for (const [pack, end] of packEnds) {
    const name = packFileName(pack);
    const size = await repo.backend.size(name).catch((error: unknown) => {
      if (error instanceof UnsafeFileError) throw damaged(`pack ${pack} is damaged: ${error.message}`);
      throw error;
    });
    if (size === null) throw damaged(`pack ${pack} is missing`);
    // The header first: a pack moved under another name is named as such, whatever its length.
    const headerProblem = packHeaderProblem(pack, await repo.backend.getRange(name, 0, PACK_HEADER_BYTES));
    if (headerProblem) throw damaged(`pack ${pack} is damaged: ${headerProblem}`);
    if (size < end) throw damaged(`pack ${pack} is truncated (${size} bytes)`);
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
      'refusal',
    );
  }
  if (!options.chunksChecked) await checkChunksPresent(repo, manifest);
  const { unitSize } = manifest;
  const size = manifest.source.size;
  const index = await repo.loadIndex();
  const unitLength = (unit: number) => Math.min(unitSize, size - unit * unitSize);
  const spanUnits = Math.max(1, Math.floor(SPAN_OUTPUT_BYTES / unitSize));
  const spanMaxUnits = spanUnits + groupUnits(unitSize);
  // The map is read a segment at a time, twice: once here, once as the spans are planned.
  const map = await repo.openMap(manifest);
  // What will be written (for progress), and whether any of it is stored (else no decoding threads are needed).
  let totalBytes = 0;
  let usedBytes = 0;
  let anyStored = false;
  const touched = options.onlyRanges ? unitsTouching(options.onlyRanges, unitSize) : null;
  for await (const { firstUnit, segment } of map.segments()) {
    for (let u = 0; u < segment.unitCount; u++) {
      if (!bit(segment.used, u)) continue;
      if (touched && !touched(firstUnit + u)) continue;
      usedBytes += unitLength(firstUnit + u);
      const k = segment.units[u]!;
      if (k === 0 && options.targetIsZeroed) continue;
      totalBytes += unitLength(firstUnit + u);
      if (k !== 0) anyStored = true;
    }
  }
  // Plan: the units to write, in disk order, gathered into spans of blobs that lie back to back in one pack
  // (a backup writes a disk's chunks in disk order), so each span is one read. Spans are made as the restore
  // needs them: a plan of the whole disk would hold an object per unit (some 2 GiB for a 2 TB disk).
  const spanTouched = options.onlyRanges ? unitsTouching(options.onlyRanges, unitSize) : null;
  async function* planSpans(): AsyncGenerator<Span> {
    let last: Span | null = null;
    for await (const { firstUnit, segment } of map.segments())
      for (let u = 0; u < segment.unitCount; u++) {
        if (!bit(segment.used, u)) continue;
        const unit = firstUnit + u;
        if (spanTouched && !spanTouched(unit)) continue;
        const chunk = chunkOf(segment, u);
        if (chunk === null && options.targetIsZeroed) continue;
        const id = chunk === null ? null : chunk;
        const entry = id ? index.get(id)! : null;
        const blobOffset = entry ? entry.blobOffset : 0;
        // A unit joins the last span when its group is already in it (a group is not cut in two: that would decode
        // it twice), or when it lies right after it in the same pack and the span is not full.
        const fits =
          last &&
          ((entry === null && last.pack === null && last.units.length < spanUnits) ||
            (entry !== null &&
              last.pack === entry.pack &&
              ((last.groups.has(blobOffset) && last.units.length < spanMaxUnits) ||
                (last.units.length < spanUnits &&
                  last.end === blobOffset &&
                  last.end - last.start < SPAN_BYTES))));
        if (!fits) {
          // No later unit joins the last span: it is complete.
          if (last) yield last;
          last = {
            pack: entry?.pack ?? null,
            start: blobOffset,
            end: blobOffset,
            units: [],
            groups: new Map(),
          };
        }
        const span = last!;
        span.units.push({ unit, id, entry });
        if (entry && !span.groups.has(blobOffset)) {
          span.groups.set(blobOffset, span.groups.size);
          span.end = blobOffset + entry.blobLength;
        }
      }
    if (last) yield last;
  }
  const threads = options.decodeThreads ?? SpanDecodePool.defaultThreads();
  // Spans read and decoding ahead of the one being written; each holds a slot until it is written.
  const spansAhead = Math.max(4, threads * 2 + 1);
  const pool = anyStored
    ? new SpanDecodePool(
        repo.keys,
        {
          inputBytes: SPAN_BYTES + maxGroupBytes(groupUnits(unitSize), MAX_GROUP_BYTES),
          outputBytes: spanMaxUnits * unitSize,
          maxUnits: spanMaxUnits,
          slots: spansAhead + WRITES_AHEAD,
        },
        threads,
      )
    : null;
  const zeros = Buffer.alloc(spanUnits * unitSize);
  // A span is read on the main thread (into a shared slot) and decoded on a worker; several are in flight so
  // reading, decoding on every core and writing the target overlap. Results are written in disk order.
  const readSpan = async (span: Span): Promise<{ data: Buffer; slot: Slot | null }> => {
    if (span.pack === null) {
      const length = span.units.reduce((sum, u) => sum + unitLength(u.unit), 0);
      return { data: zeros.subarray(0, length), slot: null };
    }
    const slot = pool!.take();
    try {
      const length = span.end - span.start;
      const bytes = await repo.backend.getRange(packFileName(span.pack), span.start, length, slot.input);
      if (bytes.length < length) throw new DamagedRepositoryError(`pack ${span.pack} is truncated`);
      const pack = span.pack;
      const groupOffsets: number[] = [];
      const groupLengths: number[] = [];
      for (const u of span.units) {
        const g = span.groups.get(u.entry!.blobOffset)!;
        groupOffsets[g] = u.entry!.blobOffset - span.start;
        groupLengths[g] = u.entry!.blobLength;
      }
      await pool!.decode(
        slot,
        length,
        span.units.map((u) => u.id!),
        {
          groupOffsets,
          groupLengths,
          unitGroups: span.units.map((u) => span.groups.get(u.entry!.blobOffset)!),
          rawOffsets: span.units.map((u) => u.entry!.rawOffset),
          unitLengths: span.units.map((u) => unitLength(u.unit)),
        },
        (message) => new DamagedRepositoryError(`pack ${pack}: ${message}`),
      );
      return { data: slot.output, slot };
    } catch (error) {
      pool!.give(slot);
      throw error;
    }
  };
  const plan = planSpans();
  const inFlight: { span: Span; decoded: Promise<{ data: Buffer; slot: Slot | null }> }[] = [];
  const fill = async () => {
    while (inFlight.length < spansAhead) {
      const planned = await plan.next();
      if (planned.done) return;
      const decoded = readSpan(planned.value);
      decoded.catch(() => undefined);
      inFlight.push({ span: planned.value, decoded });
    }
  };
  let doneBytes = 0;
  // Writes of several spans in flight at once (to different offsets): the kernel's copy into the target's page
  // cache is most of a restore's time, and one write at a time left the cores idle between them.
  const writing = new Set<Promise<void>>();
  const writeSpan = async (span: Span, decoded: { data: Buffer; slot: Slot | null }) => {
    try {
      // One write per run of consecutive units (a span's units lie in disk order, maybe with gaps).
      let runStart = 0;
      let runStartAt = 0;
      let at = 0;
      for (let i = 0; i < span.units.length; i++) {
        at += unitLength(span.units[i]!.unit);
        const last = i === span.units.length - 1;
        if (last || span.units[i + 1]!.unit !== span.units[i]!.unit + 1) {
          const firstUnit = span.units[runStart]!.unit;
          await target.write(firstUnit * unitSize, decoded.data.subarray(runStartAt, at));
          runStart = i + 1;
          runStartAt = at;
        }
      }
      doneBytes += at;
      options.onProgress?.({ doneBytes, totalBytes });
    } finally {
      if (decoded.slot) pool!.give(decoded.slot);
    }
  };
  try {
    await fill();
    while (inFlight.length > 0) {
      const { span, decoded: reading } = inFlight.shift()!;
      const decoded = await reading;
      while (writing.size >= WRITES_AHEAD) await Promise.race(writing);
      await fill();
      const write = writeSpan(span, decoded);
      writing.add(write);
      write.then(
        () => writing.delete(write),
        () => undefined,
      );
    }
    await Promise.all(writing);
  } finally {
    await pool?.close();
  }
  await target.flush();
  // Read from the repository that was opened; if it was removed, moved or replaced meanwhile, say so.
  await repo.ensureHeld();
  return { writtenBytes: doneBytes, usedBytes };
}
