// Writes one restore point: the UnitSink the snapshot copier feeds. Units are hashed, compressed and encrypted
// on worker threads, deduplicated against every chunk the repository knows, packed, and committed in the order
// packs → index → segments → point file, with checkpoints so an interrupted backup resumes where it stopped. The
// per-unit map is built a segment at a time (segment.ts): a segment is sealed and written once its units are
// settled, segments that did not change are taken from the parent unread, and a checkpoint writes only the open
// segments and the small point file — so memory and writes follow what is read, not the size of the disk.
import type { Consistency } from '../../protocol/model.ts';
import type { ByteRange } from '../device/types.ts';
import type { UnitSink } from '../snapshot/types.ts';
import { CHUNK_ID_BYTES, groupUnits, isAllZero, MAX_GROUP_BYTES, maxGroupBytes } from './chunk-codec.ts';
import { type ChunkIndex, type IndexEntry, idKey } from './chunk-index.ts';
import { type ChunkConsumer, ChunkPool } from './chunk-pool.ts';
import type { ChunkSlot } from './chunk-slots.ts';
import { FORMAT_VERSION } from './config.ts';
import { RepositoryError } from './errors.ts';
import { KnownIds } from './known-ids.ts';
import { mayHoldLeftovers, removeLeftovers } from './leftovers.ts';
import { type WriteLimits, writeLimits } from './limits.ts';
import {
  REGISTRATION_REFRESH_MS,
  RegistrationLostError,
  refreshBackup,
  registerBackup,
  SEGMENT_DELETION,
  stillRegistered,
  unregisterBackup,
  waitWhileHeldFor,
  withWriterLock,
} from './locks.ts';
import type { Manifest, PartitionRecord, SourceIdentity } from './manifest.ts';
import { PackBuilder, packFileName } from './pack.ts';
import { SegmentList } from './point-file.ts';
import { type PointMap, segmentUnits } from './point-map.ts';
import { newId, type Repository } from './repository.ts';
import { bit, chunkOf, type Segment, SegmentBuilder, usedDigest } from './segment.ts';
import { countBits, UnitRanges } from './unit-ranges.ts';

/**
 * Pack writes at once, unless the backend asks for more (an object store: each PUT waits on the network, so
 * more in flight keep it busy; measured against radosgw, 4 took a 1 GiB image's backup from 18.7-29.4 s to
 * 14.4-20.6 s). Two keep a local disk's queue full while one syncs.
 */
const PACK_PUTS = 2;
/** Filled packs waiting for or being written beyond those being written (each takes a pack's memory). */
const PACKS_QUEUED_BEYOND_PUTS = 2;

export interface PointWriterOptions {
  source: SourceIdentity;
  partitions: PartitionRecord[];
  /** Byte ranges the file systems use; null when unknown: every unit is used. */
  usedRanges: readonly ByteRange[] | null;
  consistency: Consistency;
  /** The consistent point's time; now by default. */
  time?: string;
  /** The previous point of this source, for dedup statistics and, with changedRanges, for incrementals. */
  parent?: Manifest | null;
  /** With a parent: the only ranges that can differ from it (changed-block tracking); the rest is taken from it. */
  changedRanges?: readonly ByteRange[] | null;
  /** The tap's change-tracking generation started at this point (recorded in the manifest). */
  trackingGeneration?: string | null;
  /**
   * A checkpoint of an interrupted backup of this source, taken over by this one (same point id). Its settled
   * units are neither read nor written again only when its contentStamp equals this backup's (the source was
   * not written since), and only those used then and now; otherwise everything is read (dedup still spares
   * writing what it stored).
   */
  resume?: Manifest | null;
  /**
   * The source's content state as this backup starts (device/content-stamp.ts): equal stamps mean the bytes
   * did not change in between. null: unknown (in use, changed just now): a later resume reuses nothing.
   */
  contentStamp?: string | null;
  /**
   * Minimum time between checkpoints; 0 = after every pack. By default 15 s, stretched so that checkpoints
   * take at most 5% of the time.
   */
  checkpointIntervalMs?: number;
  threads?: number;
  /** Smaller write limits (tests reach them with small images); the format's by default. */
  limits?: Partial<WriteLimits>;
  onProgress?: (progress: { doneBytes: number; totalBytes: number; storedBytes: number }) => void;
}

/** What a backup took over from an interrupted one. */
export interface ResumeOutcome {
  /** The checkpoint taken over (its point id is this backup's). */
  checkpoint: string;
  /** Units taken from it without reading them again. */
  reusedUnits: number;
  /** Why nothing was reused; null when units were. */
  rereadBecause: string | null;
}

/** A segment whose units are arriving: its builder, how many used units are still to come, its parent's. */
interface OpenSegment {
  builder: SegmentBuilder;
  remaining: number;
  parent: Segment | null;
}

/** What a commit writes: the list as it stood, segments still being written, and the open ones as partial. */
interface Snapshot {
  list: SegmentList;
  sealing: [number, Promise<Buffer>][];
  partial: [number, Segment][];
  storedBytes: number;
  newChunks: number;
  zeroUnits: number;
  changedUnits: number;
}

export class PointWriter implements UnitSink {
  readonly pointId: string;
  readonly #repo: Repository;
  readonly #options: PointWriterOptions;
  readonly #unitSize: number;
  readonly #unitCount: number;
  readonly #limits: WriteLimits;
  readonly #perSegment: number;
  readonly #segmentCount: number;
  readonly #used: UnitRanges;
  readonly #changed: UnitRanges | null;
  /** This point's segment list: set as segments are sealed (or taken from the parent or checkpoint). */
  readonly #list: SegmentList;
  #parentMap: PointMap | null = null;
  #resumeMap: PointMap | null = null;
  #reuse = false;
  /** Segments not sealed yet and the used units of each still to be read (before it opens). */
  readonly #pending = new Map<number, number>();
  readonly #open = new Map<number, OpenSegment>();
  readonly #opening = new Map<number, Promise<OpenSegment>>();
  /** Sealed segments being written, by segment index. */
  readonly #sealing = new Map<number, Promise<Buffer>>();
  #ranges: ByteRange[] = [];
  #changedUnits = 0;
  /** Chunks this backup has put in a pack (flushed or not): dedup within the backup. */
  readonly #added = new Map<string, IndexEntry>();
  /** Flushed but not yet in an index file. */
  #unindexed: [string, IndexEntry][] = [];
  /** Packs this backup started to write that no index file names yet: removed if it fails. */
  readonly #packsNotIndexed = new Set<string>();
  /** Entries of the pack being built. */
  #packEntries: [string, IndexEntry][] = [];
  /** Units sent again to be encoded after all (their id was only probably known). */
  readonly #resubmits = new Set<Promise<void>>();
  #pool: ChunkPool | null = null;
  #knownIds: KnownIds | null = null;
  #pack: PackBuilder;
  /** Settles when every pack queued so far is written; rejects (at once) if one failed. */
  #packChain: Promise<void> = Promise.resolve();
  /** Pack writes not yet settled: a failed backup waits for all of them before it removes what it wrote. */
  readonly #packWrites = new Set<Promise<void>>();
  /** Packs queued or being written; the copier waits while there are too many (memory stays bounded). */
  #packsWriting = 0;
  /** Pack writes in progress: two at once keep the disk's queue full while one syncs. */
  #packPuts = 0;
  /** Waiting for a pack write to start (#packPuts below its limit) or to end (#packsWriting below its). */
  #packWaiters: (() => void)[] = [];
  /** Buffers of written packs, for the next ones. */
  readonly #spareBuffers: Buffer[] = [];
  #commitChain: Promise<void> = Promise.resolve();
  #lastCheckpoint = Date.now();
  /** How long the last checkpoint took (it writes the open segments and the point file). */
  #checkpointMs = 0;
  #failure: Error | null = null;
  #closed = false;
  #storedBytes = 0;
  #newChunks = 0;
  #zeroUnits = 0;
  #doneBytes = 0;
  #totalBytes = 0;
  readonly #time: string;
  #result: Manifest | null = null;
  /** Set when this backup took over an interrupted one. */
  resumed: ResumeOutcome | null = null;
  /** Pack writes at once, for this backend. */
  readonly #packPutLimit: number;
  /** When the registration was stored (the storage's clock), and when this writer last refreshed it. */
  #registeredAt = 0;
  #refreshedAt = 0;
  /** A refresh started from #settle: awaited before unregistering, so it cannot bring the registration back. */
  #refreshing: Promise<void> = Promise.resolve();

  private constructor(repo: Repository, options: PointWriterOptions, pointId?: string) {
    this.#repo = repo;
    this.#options = options;
    this.#unitSize = repo.chunkSize;
    this.#unitCount = Math.ceil(options.source.size / this.#unitSize);
    this.#limits = writeLimits(options.limits);
    this.#packPutLimit = Math.max(PACK_PUTS, repo.backend.writesInFlight ?? 0);
    // A point keeps the layout of the one it continues (their segments are compared by index).
    this.#perSegment =
      options.resume?.unitsPerSegment ?? options.parent?.unitsPerSegment ?? this.#limits.unitsPerSegment;
    this.#segmentCount = Math.ceil(this.#unitCount / this.#perSegment);
    this.#used = new UnitRanges(options.usedRanges, this.#unitSize, this.#unitCount);
    this.#changed =
      options.parent && options.changedRanges
        ? new UnitRanges(options.changedRanges, this.#unitSize, this.#unitCount)
        : null;
    this.#list = SegmentList.empty(this.#segmentCount);
    this.#pack = this.#newPack();
    const resume = options.resume ?? null;
    this.pointId = pointId ?? (resume ? resume.id : newId());
    this.#reuse = resume ? this.#mayReuse(resume) : false;
    // A point re-read from scratch holds the source as it is now, not at the checkpoint's time.
    this.#time = this.#reuse && resume ? resume.time : (options.time ?? new Date().toISOString());
  }

  /** Registers the backup, loads the index and starts the worker threads. */
  static async create(repo: Repository, options: PointWriterOptions): Promise<PointWriter> {
    const layout = options.resume?.unitsPerSegment ?? options.parent?.unitsPerSegment;
    for (const other of [options.parent, options.resume]) {
      if (
        other &&
        (other.unitSize !== repo.chunkSize ||
          other.source.size !== options.source.size ||
          other.unitsPerSegment !== layout)
      ) {
        throw new RepositoryError(
          `point ${other.id} was taken of a ${other.source.size}-byte source, this one has ${options.source.size} bytes: it cannot be a parent or resumed`,
        );
      }
    }
    if (repo.config.format < FORMAT_VERSION)
      await withWriterLock(repo.backend, 'backup: format', () => repo.prepareForPoints());
    let writer = new PointWriter(repo, options);
    // Register before loading the index: a prune condemning packs after this moment waits for this backup.
    writer.#registeredAt = await registerBackup(repo.backend, writer.pointId, options.source.path);
    writer.#refreshedAt = Date.now();
    try {
      // Registered, so no prune starts deleting segments from now on. One that checked for backups just before
      // this registration may still be deleting (holding the writer lock for that from before its check to its
      // last delete): waited for — and only for that, not for prune's other steps — and what this repository
      // object believed stored is forgotten, before any segment is taken as stored.
      await waitWhileHeldFor(repo.backend, SEGMENT_DELETION);
      repo.forgetStoredSegments();
      // The parent and checkpoint must still be there (a prune that forgot one before this backup registered
      // may have deleted segments only it named). Asked of the store by a listing: a cached size could be older.
      const present = new Set(await repo.pointIds());
      for (const other of [options.parent, options.resume]) {
        if (other && !present.has(other.id))
          throw new RepositoryError(
            `point ${other.id} was removed by a prune as this backup started; run the backup again`,
          );
      }
      if (options.parent) writer.#parentMap = await repo.openMap(options.parent);
      if (options.resume) writer.#resumeMap = await repo.openMap(options.resume);
      const packNames = await repo.backend.list('packs/');
      const index = await repo.loadIndex(true);
      // The parent and checkpoint were read before registering: a prune may have condemned what they name
      // since. Units are taken from them only when every chunk they would lend is live; else all are read
      // (dedup against live packs still spares storing what is there).
      if (await writer.#lendsCondemned(index)) {
        const parentMap = writer.#parentMap;
        const registeredAt = writer.#registeredAt;
        writer = new PointWriter(
          repo,
          { ...options, parent: options.parent ?? null, changedRanges: null, resume: null },
          writer.pointId,
        );
        writer.#registeredAt = registeredAt;
        writer.#refreshedAt = Date.now();
        // Still the parent: only to count what changed since it.
        writer.#parentMap = parentMap;
        if (options.resume) {
          writer.resumed = {
            checkpoint: options.resume.id,
            reusedUnits: 0,
            rereadBecause: 'a prune condemned chunks the checkpoint names since it was read',
          };
        }
      }
      await writer.#removeLeftovers(packNames, index);
      await writer.#plan();
      writer.#knownIds = new KnownIds(index.size + Math.ceil(writer.#totalBytes / writer.#unitSize));
      for (const id of index.ids()) writer.#knownIds.add(id);
      writer.#pool = new ChunkPool(
        repo.keys,
        writer.#knownIds,
        writer.#unitSize,
        writer.#consumer,
        options.threads,
      );
      // An empty checkpoint at once: from the first second, an interrupted backup shows as incomplete.
      if (!options.resume) await writer.#commit(writer.#snapshot(), false);
    } catch (error) {
      await writer.#pool?.close();
      await unregisterBackup(repo.backend, writer.pointId);
      throw error;
    }
    return writer;
  }

  /**
   * Whether the parent (unchanged units) or the checkpoint (settled units) would lend a chunk of a pack a prune
   * has condemned. Their segments are read for it only while a prune record stands: otherwise nothing is
   * condemned.
   */
  async #lendsCondemned(index: ChunkIndex): Promise<boolean> {
    if (!index.hasCondemned) return false;
    const seen = new Set<string>();
    for (const map of [this.#changed ? this.#parentMap : null, this.#reuse ? this.#resumeMap : null]) {
      if (!map) continue;
      for (let at = 0; at < map.segmentCount; at++) {
        const id = map.list.id(at);
        if (id) {
          const key = id.toString('hex');
          if (seen.has(key)) continue;
          seen.add(key);
        }
        const segment = await map.segment(at);
        for (let chunk = 0; chunk < segment.chunkIds.length; chunk += 32)
          if (!index.has(segment.chunkIds.subarray(chunk, chunk + 32))) return true;
      }
    }
    return false;
  }

  /**
   * Packs and temp files a killed writer left take space a retry on a full disk needs: removed before this
   * backup writes anything (leftovers.ts), when there are any and no other backup runs.
   */
  async #removeLeftovers(packNames: string[], index: ChunkIndex): Promise<void> {
    const known = index.packs();
    for (const record of await this.#repo.pruneRecords()) for (const pack of record.packs) known.add(pack);
    if (!mayHoldLeftovers(packNames, await this.#repo.backend.list('tmp/'), known)) return;
    await withWriterLock(this.#repo.backend, `backup ${this.pointId}: leftovers`, () =>
      removeLeftovers(this.#repo, { ownBackup: this.pointId, packNames }),
    );
  }

  /** Whether the checkpoint's units still hold the source's bytes; sets `resumed` saying so. */
  #mayReuse(resume: Manifest): boolean {
    const stamp = this.#options.contentStamp ?? null;
    let rereadBecause: string | null = null;
    if (!resume.partialSegments) rereadBecause = 'the checkpoint records no settled units';
    else if (!resume.contentStamp)
      rereadBecause = 'the source was in use or changing when the interrupted backup started';
    else if (!stamp) rereadBecause = 'the source is in use or changed just now';
    else if (stamp !== resume.contentStamp)
      rereadBecause = 'the source was written since the interrupted backup started';
    this.resumed = { checkpoint: resume.id, reusedUnits: 0, rereadBecause };
    return rereadBecause === null;
  }

  /** The used bits of segment `index` in this point. */
  #usedBits(index: number): Uint8Array {
    return this.#used.bits(index * this.#perSegment, this.#unitsIn(index));
  }

  #unitsIn(index: number): number {
    return segmentUnits(this.#unitCount, this.#perSegment, index);
  }

  /**
   * Decides, per segment, what this point takes unread — the empty segment, the checkpoint's settled segment,
   * or the parent's when its used map is the same and no changed block falls in it — and which units are to be
   * read. Only segments a change falls in are read (their parent's, to copy the units that did not change).
   */
  async #plan(): Promise<void> {
    const parent = this.#parentMap;
    const resume = this.#reuse ? this.#resumeMap : null;
    const partial = new Set(this.#options.resume?.partialSegments ?? []);
    const idKey = this.#repo.keys.idKey;
    const emptyIds = new Map<number, Buffer>();
    const ranges: ByteRange[] = [];
    const addRun = (firstUnit: number, endUnit: number) => {
      const start = firstUnit * this.#unitSize;
      const end = Math.min(this.#options.source.size, endUnit * this.#unitSize);
      const last = ranges[ranges.length - 1];
      if (last && last.start + last.length === start) last.length += end - start;
      else ranges.push({ start, length: end - start });
    };
    for (let index = 0; index < this.#segmentCount; index++) {
      const units = this.#unitsIn(index);
      const first = index * this.#perSegment;
      const used = this.#usedBits(index);
      const digest = usedDigest(idKey, used, units);
      const usedCount = countBits(used, units);
      if (usedCount === 0) {
        let id = emptyIds.get(units);
        if (!id) {
          id = await this.#repo.writeSegment(new SegmentBuilder(units, used).build(false));
          emptyIds.set(units, id);
        }
        this.#list.set(index, id, digest);
        continue;
      }
      const resumeId = resume?.list.id(index) ?? null;
      if (resumeId && !partial.has(index) && resume!.list.usedDigest(index).equals(digest)) {
        this.#list.set(index, resumeId, digest);
        this.resumed!.reusedUnits += usedCount;
        if (parent && !parent.list.sameAs(resume!.list, index))
          this.#changedUnits += changedUnits(await resume!.segment(index), await parent.segment(index));
        continue;
      }
      const parentId = parent?.list.id(index) ?? null;
      if (
        this.#changed &&
        parentId &&
        parent!.list.usedDigest(index).equals(digest) &&
        !this.#changed.touches(first, units)
      ) {
        // A format 3 parent's segment ids are computed from its whole map, not stored: stored now, once.
        const stored =
          parent!.manifest.format === 1
            ? await this.#repo.writeSegment(await parent!.segment(index))
            : parentId;
        this.#list.set(index, stored, digest);
        continue;
      }
      const toRead = await this.#unitsToRead(index, used);
      let count = 0;
      let runStart = -1;
      for (let u = 0; u <= units; u++) {
        const read = u < units && bit(toRead, u);
        if (read) count += 1;
        if (read && runStart < 0) runStart = u;
        if (!read && runStart >= 0) {
          addRun(first + runStart, first + u);
          runStart = -1;
        }
      }
      this.#pending.set(index, count);
      // Settled without reading (units freed, or the checkpoint's): sealed now.
      if (count === 0) await this.#openSegment(index);
    }
    this.#ranges = ranges;
    for (const range of ranges) this.#totalBytes += range.length;
  }

  /** Used units of segment `index` that neither the parent (unchanged) nor the checkpoint (settled) give. */
  async #unitsToRead(index: number, used: Uint8Array): Promise<Uint8Array> {
    const toRead = used.slice();
    const source = await this.#prefillSource(index, used);
    const units = this.#unitsIn(index);
    for (let u = 0; u < units; u++) if (source.of(u) !== null) toRead[u >>> 3]! &= ~(1 << (u & 7));
    return toRead;
  }

  /**
   * Where segment `index`'s used units come from without reading: the parent's unchanged ones (incrementals),
   * then the checkpoint's settled ones used then and now (a unit free at the interruption was never read).
   */
  async #prefillSource(
    index: number,
    used: Uint8Array,
  ): Promise<{
    of: (unit: number) => 'parent' | 'checkpoint' | null;
    chunk: (unit: number) => Buffer | null;
  }> {
    const first = index * this.#perSegment;
    const parent = this.#changed && this.#parentMap ? await this.#parentMap.segment(index) : null;
    const resume = this.#reuse && this.#resumeMap ? await this.#resumeMap.segment(index) : null;
    const of = (u: number) => {
      if (!bit(used, u)) return null;
      if (resume !== null && bit(resume.used, u) && (resume.done === null || bit(resume.done, u)))
        return 'checkpoint';
      if (parent !== null && bit(parent.used, u) && !this.#changed!.has(first + u)) return 'parent';
      return null;
    };
    return {
      of,
      chunk: (u) => {
        const from = of(u);
        return from === 'checkpoint' ? chunkOf(resume!, u) : from === 'parent' ? chunkOf(parent!, u) : null;
      },
    };
  }

  /** Opens segment `index` for its units to arrive: prefilled from the parent and checkpoint, unused units settled. */
  #ensureOpen(index: number): Promise<OpenSegment> {
    const open = this.#open.get(index);
    if (open) return Promise.resolve(open);
    let opening = this.#opening.get(index);
    if (!opening) {
      opening = this.#openSegment(index);
      this.#opening.set(index, opening);
      opening.then(
        () => this.#opening.delete(index),
        () => this.#opening.delete(index),
      );
    }
    return opening;
  }

  async #openSegment(index: number): Promise<OpenSegment> {
    const units = this.#unitsIn(index);
    const used = this.#usedBits(index);
    const builder = new SegmentBuilder(units, used);
    const source = await this.#prefillSource(index, used);
    let remaining = 0;
    for (let u = 0; u < units; u++) {
      const from = bit(used, u) ? source.of(u) : null;
      if (!bit(used, u)) builder.set(u, null);
      else if (from !== null) {
        builder.set(u, source.chunk(u));
        if (from === 'checkpoint' && this.resumed) this.resumed.reusedUnits += 1;
      } else remaining += 1;
    }
    const parent = this.#parentMap ? await this.#parentMap.segment(index) : null;
    const open: OpenSegment = { builder, remaining, parent };
    this.#pending.delete(index);
    this.#open.set(index, open);
    if (remaining === 0) this.#seal(index, open);
    return open;
  }

  /** A segment whose units are all settled: counted, written (content-addressed) and dropped from memory. */
  #seal(index: number, open: OpenSegment): void {
    this.#open.delete(index);
    const segment = open.builder.build(false);
    if (open.parent) this.#changedUnits += changedUnits(segment, open.parent);
    else this.#changedUnits += countBits(segment.used, segment.unitCount);
    const digest = usedDigest(this.#repo.keys.idKey, segment.used, segment.unitCount);
    const write = this.#repo.writeSegment(segment).then((id) => {
      this.#list.set(index, id, digest);
      return id;
    });
    write.catch((error: Error) => {
      this.#failure ??= error;
    });
    this.#sealing.set(index, write);
    write.then(
      () => this.#sealing.delete(index),
      () => undefined,
    );
  }

  /** The byte ranges the copier must read: used units not settled by the parent or a resumed checkpoint. */
  rangesToRead(): ByteRange[] {
    return this.#ranges.map((range) => ({ ...range }));
  }

  get unitSize(): number {
    return this.#unitSize;
  }

  /** The committed manifest, after finish. */
  get result(): Manifest {
    if (!this.#result) throw new Error('the point is not committed yet');
    return this.#result;
  }

  async writeUnit(offset: number, data: Buffer): Promise<void> {
    if (this.#failure) throw this.#failure;
    if (this.#closed) throw new Error(`backup ${this.pointId} is already finished`);
    if (offset % this.#unitSize !== 0)
      throw new Error(`unit offset ${offset} is not a multiple of ${this.#unitSize}`);
    const unit = offset / this.#unitSize;
    if (unit >= this.#unitCount) throw new Error(`unit offset ${offset} is beyond the source's end`);
    const index = Math.floor(unit / this.#perSegment);
    // A unit of a segment already decided (taken unread, or sealed) is not one to read: the copier was told.
    if (!this.#pending.has(index) && !this.#open.has(index) && !this.#opening.has(index)) return;
    await this.#ensureOpen(index);
    if (isAllZero(data)) {
      this.#settle(unit, null, data.length);
      return;
    }
    // A bounded number of filled packs wait for the storage: it sets the pace, and memory stays bounded.
    while (this.#packsWriting >= this.#packPutLimit + PACKS_QUEUED_BEYOND_PUTS && !this.#failure)
      await this.#packEvent();
    await this.#pool!.submit(unit, data);
  }

  #packEvent(): Promise<void> {
    return new Promise((resolve) => this.#packWaiters.push(resolve));
  }

  #isStored(id: Buffer): boolean {
    return this.#repo.loadIndexCached()?.has(id) === true || this.#added.has(idKey(id));
  }

  #newPack(): PackBuilder {
    const capacity = this.#repo.config.packSize + maxGroupBytes(groupUnits(this.#unitSize), MAX_GROUP_BYTES);
    return new PackBuilder(newId(), this.#spareBuffers.pop() ?? PackBuilder.allocate(capacity));
  }

  /** The workers' results, placed while their shared memory still holds them. */
  readonly #consumer: ChunkConsumer = {
    batch: (tags, slot, groupLength) => {
      const idOf = (i: number) => slot.ids.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES);
      if (groupLength > 0) this.#placeGroup(tags.length, slot, groupLength, idOf);
      let dataAt = 0;
      for (let i = 0; i < tags.length; i++) {
        const id = idOf(i);
        const length = slot.lengths[i]!;
        if (this.#isStored(id)) this.#settle(tags[i]!, id, length);
        else {
          // Only probably known (the shared set holds 8 bytes of each id): another chunk with the same prefix.
          const data = Buffer.from(slot.input.subarray(dataAt, dataAt + length));
          const resubmit = this.#pool!.submit(tags[i]!, data, true).catch((error: Error) => {
            this.#failure ??= error;
          });
          this.#resubmits.add(resubmit);
          resubmit.finally(() => this.#resubmits.delete(resubmit));
        }
        dataAt += length;
      }
    },
  };

  /** Puts a batch's group blob in the pack and indexes its members (those not stored meanwhile by another batch). */
  #placeGroup(count: number, slot: ChunkSlot, groupLength: number, idOf: (i: number) => Buffer): void {
    const fresh = Array.from({ length: count }, (_, i) => slot.members[i] === 1 && !this.#isStored(idOf(i)));
    const freshCount = fresh.filter(Boolean).length;
    if (freshCount === 0) return;
    const blob = slot.output.subarray(0, groupLength);
    const placed = this.#pack.add(blob);
    let rawOffset = 0;
    for (let i = 0; i < count; i++) {
      if (!slot.members[i]) continue;
      const length = slot.lengths[i]!;
      if (fresh[i]) {
        const id = idOf(i);
        const key = idKey(id);
        const entry: IndexEntry = {
          pack: this.#pack.packId,
          blobOffset: placed.headerOffset,
          blobLength: groupLength,
          rawOffset,
          rawLength: length,
        };
        this.#added.set(key, entry);
        this.#knownIds!.add(id);
        this.#packEntries.push([key, entry]);
      }
      rawOffset += length;
    }
    this.#storedBytes += groupLength;
    this.#newChunks += freshCount;
    if (this.#pack.length >= this.#repo.config.packSize || this.#pack.count >= this.#limits.groupsPerPack)
      this.#rotatePack(true);
  }

  #settle(unit: number, id: Buffer | null, length: number): void {
    // A backup that stores nothing new for long (an incremental of a big disk) still says it is alive.
    if (Date.now() - this.#refreshedAt >= REGISTRATION_REFRESH_MS) {
      this.#refreshing = this.#refreshRegistration().catch((error: Error) => {
        this.#failure ??= error;
      });
    }
    const index = Math.floor(unit / this.#perSegment);
    const open = this.#open.get(index);
    // A unit the copier need not have read, of a segment already sealed: what the segment holds stands.
    if (!open) return;
    const inSegment = unit - index * this.#perSegment;
    if (id === null) this.#zeroUnits += 1;
    const fresh = !open.builder.isDone(inSegment);
    open.builder.set(inSegment, id);
    if (fresh) {
      this.#doneBytes += length;
      open.remaining -= 1;
      if (open.remaining === 0) this.#seal(index, open);
    }
    this.#options.onProgress?.({
      doneBytes: this.#doneBytes,
      totalBytes: this.#totalBytes,
      storedBytes: this.#storedBytes,
    });
  }

  /** Queues the current pack for writing (if it holds anything) and starts a new one. */
  #rotatePack(mayCheckpoint: boolean): void {
    const full = this.#pack;
    if (full.count === 0) return;
    this.#pack = this.#newPack();
    const entries = this.#packEntries;
    this.#packEntries = [];
    this.#packsWriting += 1;
    this.#packsNotIndexed.add(full.packId);
    const write = (async () => {
      while (this.#packPuts >= this.#packPutLimit) await this.#packEvent();
      this.#packPuts += 1;
      try {
        await this.#repo.backend.put(packFileName(full.packId), full.finish());
        await this.#refreshRegistration();
      } finally {
        this.#packPuts -= 1;
        this.#packsWriting -= 1;
        for (const wake of this.#packWaiters.splice(0)) wake();
      }
      // Indexed only once durable, in whatever order the writes end.
      // One by one: a pack of small groups holds hundreds of thousands of entries, too many to spread into a call.
      for (const entry of entries) this.#unindexed.push(entry);
      this.#spareBuffers.push(full.buffer);
    })();
    write.catch((error: Error) => {
      this.#failure ??= error;
    });
    this.#packWrites.add(write);
    write.then(
      () => this.#packWrites.delete(write),
      () => this.#packWrites.delete(write),
    );
    this.#packChain = Promise.all([this.#packChain, write]).then(() => undefined);
    this.#packChain.catch(() => undefined);
    // By default every 15 s, but never more than 5% of the time: a big disk's manifest takes long to write.
    const interval = this.#options.checkpointIntervalMs ?? Math.max(15_000, 20 * this.#checkpointMs);
    if (mayCheckpoint && Date.now() - this.#lastCheckpoint >= interval) {
      this.#lastCheckpoint = Date.now();
      this.#checkpoint().catch((error: Error) => {
        this.#failure ??= error;
      });
    }
  }

  #snapshot(): Snapshot {
    return {
      list: this.#list.copy(),
      sealing: [...this.#sealing],
      partial: [...this.#open].map(([index, open]) => [index, open.builder.build(true)]),
      storedBytes: this.#storedBytes,
      newChunks: this.#newChunks,
      zeroUnits: this.#zeroUnits,
      changedUnits: this.#changedUnits,
    };
  }

  /** Commits what is settled so far as an incomplete point: everything it names is flushed first. */
  #checkpoint(): Promise<void> {
    // Taken synchronously: every unit in it has its chunk in a pack already queued (or known before).
    const started = Date.now();
    const snapshot = this.#snapshot();
    const snapshotMs = Date.now() - started;
    this.#rotatePack(false);
    const packsWritten = this.#packChain;
    this.#commitChain = this.#commitChain.then(async () => {
      await packsWritten;
      const committing = Date.now();
      await this.#commit(snapshot, false);
      this.#checkpointMs = snapshotMs + (Date.now() - committing);
    });
    return this.#commitChain;
  }

  #manifest(snapshot: Snapshot, complete: boolean, partialSegments: number[]): Manifest {
    const { source, partitions, parent, consistency } = this.#options;
    const usedUnits = this.#used.count();
    const lastUnitBytes = source.size - (this.#unitCount - 1) * this.#unitSize;
    const unitBytes = (count: number, includesLast: boolean) =>
      count * this.#unitSize - (includesLast ? this.#unitSize - lastUnitBytes : 0);
    const lastUsed = this.#unitCount > 0 && this.#used.has(this.#unitCount - 1);
    const changedUnits = parent ? snapshot.changedUnits : usedUnits;
    return {
      format: 2,
      id: this.pointId,
      time: this.#time,
      complete,
      parent: parent?.id ?? null,
      consistency:
        (this.resumed?.reusedUnits ?? 0) > 0 && consistency !== 'offline' ? 'crash-consistent' : consistency,
      source,
      partitions,
      unitSize: this.#unitSize,
      unitCount: this.#unitCount,
      unitsPerSegment: this.#perSegment,
      ...(complete ? {} : { partialSegments }),
      ...(this.#options.trackingGeneration ? { trackingGeneration: this.#options.trackingGeneration } : {}),
      ...(this.#options.contentStamp ? { contentStamp: this.#options.contentStamp } : {}),
      stats: {
        usedBytes: unitBytes(usedUnits, lastUsed),
        changedBytes: Math.min(unitBytes(usedUnits, lastUsed), changedUnits * this.#unitSize),
        storedBytes: snapshot.storedBytes,
        zeroUnits: snapshot.zeroUnits,
        newChunks: snapshot.newChunks,
      },
    };
  }

  /**
   * The snapshot's segments stored: those sealing are awaited, the open ones written as partial segments (a
   * checkpoint appends only these). Returns the list to commit and the partial segments' indexes.
   */
  async #storeSegments(snapshot: Snapshot): Promise<{ list: SegmentList; partial: number[] }> {
    const list = snapshot.list;
    for (const [index, write] of snapshot.sealing) list.set(index, await write, this.#digestOf(index));
    const partial: number[] = [];
    for (const [index, segment] of snapshot.partial) {
      list.set(index, await this.#repo.writeSegment(segment), this.#digestOf(index));
      partial.push(index);
    }
    return { list, partial };
  }

  #digestOf(index: number): Buffer {
    return usedDigest(this.#repo.keys.idKey, this.#usedBits(index), this.#unitsIn(index));
  }

  /**
   * Writes the point's segments, the index file of the packs written since the last commit, then the point
   * file: only files of this backup's own (segments are content-addressed, written once whoever writes them),
   * so no lock is taken and backups on many machines commit at once. A prune condemning packs this point uses
   * waits for this backup and rescues them (prune.ts), and deletes no segment while a backup is registered, so
   * nothing shared is rewritten here.
   */
  async #commit(snapshot: Snapshot, complete: boolean): Promise<Manifest> {
    const { list, partial } = await this.#storeSegments(snapshot);
    const manifest = this.#manifest(snapshot, complete, partial);
    // Only into the repository this backup opened: one removed, moved or replaced since fails here.
    await this.#repo.ensureHeld();
    // A prune that found this backup's registration expired (no refresh for half an hour) no longer waits
    // for it and may have deleted chunks or segments it uses: such a backup must not commit. Renewed first when
    // due, so no prune can find it expired while this commit writes.
    await this.#refreshing;
    await this.#refreshRegistration();
    if (!(await stillRegistered(this.#repo.backend, this.pointId))) {
      throw new RegistrationLostError(
        `backup ${this.pointId} lost its registration in ${this.#repo.path} (it was not refreshed in time, so a prune no longer waits for it); run the backup again`,
      );
    }
    if (this.#unindexed.length > 0) {
      // Take the list: packs finishing while this index file is written go into a fresh one.
      const entries = this.#unindexed;
      this.#unindexed = [];
      // In files of at most the limit's entries; those written name their packs, which must then never be
      // removed. A put can fail after its rename (syncing the folder): when that cannot be told, the packs
      // are kept.
      const perFile = this.#limits.entriesPerIndexFile;
      let from = 0;
      try {
        while (from < entries.length) {
          const to = Math.min(entries.length, from + perFile);
          const indexName = `index/${newId()}`;
          let written = true;
          try {
            await this.#repo.writeIndexFile(indexName, entries, from, to);
          } catch (error) {
            written = await this.#repo.backend.size(indexName).then(
              (size) => size !== null,
              () => true,
            );
            throw error;
          } finally {
            if (written) {
              for (let at = from; at < to; at++)
                this.#packsNotIndexed.delete((entries[at] as [string, IndexEntry])[1].pack);
              from = to;
            }
          }
        }
      } catch (error) {
        this.#unindexed = entries.slice(from).concat(this.#unindexed);
        throw error;
      }
      // Readers of this Repository object (openPoint right after the backup) see the new chunks.
      const index = this.#repo.loadIndexCached();
      for (const [key, entry] of entries) index?.set(key, entry);
    }
    await this.#repo.writePoint(manifest, list);
    return manifest;
  }

  /** Stores the registration again when due, so other machines' prunes see this backup alive. */
  async #refreshRegistration(): Promise<void> {
    const since = Date.now() - this.#refreshedAt;
    if (since < REGISTRATION_REFRESH_MS) return;
    // Counted from before the put: the storage's time of it is no earlier.
    const started = Date.now();
    this.#refreshedAt = started;
    await refreshBackup(
      this.#repo.backend,
      this.pointId,
      this.#options.source.path,
      this.#registeredAt,
      since,
    );
  }

  async #drain(): Promise<void> {
    do {
      while (this.#resubmits.size > 0) await Promise.all([...this.#resubmits]);
      await this.#pool?.drain();
    } while (this.#resubmits.size > 0);
  }

  async finish(): Promise<void> {
    try {
      await this.#drain();
      if (this.#failure) throw this.#failure;
      let missing = 0;
      for (const count of this.#pending.values()) missing += count;
      for (const open of this.#open.values()) missing += open.remaining;
      if (missing > 0) {
        throw new RepositoryError(
          `backup ${this.pointId} is incomplete: ${missing} used units never arrived`,
        );
      }
      this.#closed = true;
      this.#rotatePack(false);
      await this.#packChain;
      await this.#commitChain;
      if (this.#failure) throw this.#failure;
      this.#result = await this.#commit(this.#snapshot(), true);
    } catch (error) {
      await this.abort(error as Error);
      throw error;
    }
    await this.#close();
  }

  /**
   * Keeps what is settled as a checkpoint (so a new backup resumes from it) and stops. What cannot be kept —
   * packs no index file names, because a write failed (a full disk) or the checkpoint could not commit — is
   * removed, so a retry finds the space it needs and the repository holds nothing nobody can reach.
   */
  async abort(_reason: Error): Promise<void> {
    if (this.#closed && this.#result) return;
    this.#closed = true;
    await this.#drain().catch(() => undefined);
    if (!this.#failure) {
      await this.#checkpoint().catch(() => undefined);
    }
    // Let every pack write end (the chain rejects at the first failure, while others may still run), then
    // remove the packs of this backup that no index file names.
    await this.#commitChain.catch(() => undefined);
    while (this.#packWrites.size > 0) await Promise.allSettled([...this.#packWrites]);
    await this.#removeUnindexedPacks();
    // Closing must not hide why the backup stopped: a registration left in a vanished repository is moot.
    await this.#close().catch(() => undefined);
  }

  async #removeUnindexedPacks(): Promise<void> {
    for (const pack of this.#packsNotIndexed) {
      try {
        await this.#repo.backend.delete(packFileName(pack));
        this.#packsNotIndexed.delete(pack);
      } catch {
        // The repository is gone or unwritable: what is left is found by prune (packs in no index).
      }
    }
    this.#unindexed = [];
  }

  async #close(): Promise<void> {
    await this.#pool?.close();
    this.#pool = null;
    await this.#refreshing;
    await unregisterBackup(this.#repo.backend, this.pointId);
  }
}

/** Used units of `mine` that the parent did not use or that hold other bytes than the parent's. */
function changedUnits(mine: Segment, parent: Segment): number {
  let changed = 0;
  for (let u = 0; u < mine.unitCount; u++) {
    if (!bit(mine.used, u)) continue;
    if (u >= parent.unitCount || !bit(parent.used, u)) {
      changed += 1;
      continue;
    }
    const a = chunkOf(mine, u);
    const b = chunkOf(parent, u);
    if (a === null ? b !== null : b === null || !a.equals(b)) changed += 1;
  }
  return changed;
}
