// Writes one restore point: the UnitSink the snapshot copier feeds. Units are hashed, compressed and encrypted
// on worker threads, deduplicated against every chunk the repository knows, packed, and committed in the order
// packs → index → manifest, with checkpoints so an interrupted backup resumes where it stopped.
import type { Consistency } from '../../protocol/model.ts';
import type { ByteRange } from '../device/types.ts';
import type { UnitSink } from '../snapshot/types.ts';
import { CHUNK_ID_BYTES, groupUnits, isAllZero, MAX_GROUP_BYTES, maxGroupBytes } from './chunk-codec.ts';
import { type ChunkIndex, type IndexEntry, idKey } from './chunk-index.ts';
import { type ChunkConsumer, ChunkPool } from './chunk-pool.ts';
import type { ChunkSlot } from './chunk-slots.ts';
import { RepositoryError } from './errors.ts';
import { KnownIds } from './known-ids.ts';
import { mayHoldLeftovers, removeLeftovers } from './leftovers.ts';
import { type WriteLimits, writeLimits } from './limits.ts';
import {
  REGISTRATION_REFRESH_MS,
  refreshBackup,
  registerBackup,
  stillRegistered,
  unregisterBackup,
  withWriterLock,
} from './locks.ts';
import {
  bitmapFromRanges,
  type Manifest,
  type PartitionRecord,
  rangesOfUnits,
  type SourceIdentity,
  setBit,
  testBit,
} from './manifest.ts';
import { PackBuilder, packFileName } from './pack.ts';
import { newId, type Repository } from './repository.ts';

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

interface Snapshot {
  units: Uint32Array;
  chunkIds: Buffer[];
  done: Uint8Array;
  storedBytes: number;
  newChunks: number;
  zeroUnits: number;
}

export class PointWriter implements UnitSink {
  readonly pointId: string;
  readonly #repo: Repository;
  readonly #options: PointWriterOptions;
  readonly #unitSize: number;
  readonly #unitCount: number;
  readonly #limits: WriteLimits;
  readonly #used: Uint8Array;
  readonly #done: Uint8Array;
  readonly #units: Uint32Array;
  readonly #chunkIds: Buffer[] = [];
  readonly #chunkSlots = new Map<string, number>();
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
  /** How long the last checkpoint took (its manifest grows with the disk: 1.3 MiB for 4 GiB, ~650 MiB for 2 TB). */
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
    this.#used = options.usedRanges
      ? bitmapFromRanges(options.usedRanges, this.#unitSize, this.#unitCount)
      : new Uint8Array(Math.ceil(this.#unitCount / 8)).fill(0xff);
    this.#done = new Uint8Array(this.#used.length);
    this.#units = new Uint32Array(this.#unitCount);
    this.#pack = this.#newPack();
    const resume = options.resume ?? null;
    this.pointId = pointId ?? (resume ? resume.id : newId());
    const reuse = resume ? this.#mayReuse(resume) : false;
    // A point re-read from scratch holds the source as it is now, not at the checkpoint's time.
    this.#time = reuse && resume ? resume.time : (options.time ?? new Date().toISOString());
    this.#prefill(reuse);
  }

  /** Registers the backup, loads the index and starts the worker threads. */
  static async create(repo: Repository, options: PointWriterOptions): Promise<PointWriter> {
    for (const other of [options.parent, options.resume]) {
      if (other && (other.unitSize !== repo.chunkSize || other.source.size !== options.source.size)) {
        throw new RepositoryError(
          `point ${other.id} was taken of a ${other.source.size}-byte source, this one has ${options.source.size} bytes: it cannot be a parent or resumed`,
        );
      }
    }
    let writer = new PointWriter(repo, options);
    // Register before loading the index: a prune condemning packs after this moment waits for this backup.
    writer.#registeredAt = await registerBackup(repo.backend, writer.pointId, options.source.path);
    writer.#refreshedAt = Date.now();
    try {
      const packNames = await repo.backend.list('packs/');
      const index = await repo.loadIndex(true);
      // The parent and checkpoint were read before registering: a prune may have condemned what they name
      // since. Units are taken from them only when every chunk they would lend is live; else all are read
      // (dedup against live packs still spares storing what is there).
      if (writer.#chunkIds.some((id) => !index.has(id))) {
        const registeredAt = writer.#registeredAt;
        writer = new PointWriter(
          repo,
          { ...options, parent: options.parent ?? null, changedRanges: null, resume: null },
          writer.pointId,
        );
        writer.#registeredAt = registeredAt;
        writer.#refreshedAt = Date.now();
        if (options.resume) {
          writer.resumed = {
            checkpoint: options.resume.id,
            reusedUnits: 0,
            rereadBecause: 'a prune condemned chunks the checkpoint names since it was read',
          };
        }
      }
      await writer.#removeLeftovers(packNames, index);
      writer.#knownIds = new KnownIds(index.size + writer.#unitCount);
      for (const key of index.entries.keys()) writer.#knownIds.add(Buffer.from(key, 'base64'));
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

  #slot(id: Buffer): number {
    const key = idKey(id);
    let slot = this.#chunkSlots.get(key);
    if (slot === undefined) {
      // A copy: the id may lie in memory that is reused.
      this.#chunkIds.push(Buffer.from(id));
      slot = this.#chunkIds.length;
      this.#chunkSlots.set(key, slot);
    }
    return slot;
  }

  /** Whether the checkpoint's units still hold the source's bytes; sets `resumed` saying so. */
  #mayReuse(resume: Manifest): boolean {
    const stamp = this.#options.contentStamp ?? null;
    let rereadBecause: string | null = null;
    if (!resume.done) rereadBecause = 'the checkpoint records no settled units';
    else if (!resume.contentStamp)
      rereadBecause = 'the source was in use or changing when the interrupted backup started';
    else if (!stamp) rereadBecause = 'the source is in use or changed just now';
    else if (stamp !== resume.contentStamp)
      rereadBecause = 'the source was written since the interrupted backup started';
    this.resumed = { checkpoint: resume.id, reusedUnits: 0, rereadBecause };
    return rereadBecause === null;
  }

  #prefill(reuse: boolean): void {
    const { parent, changedRanges, resume } = this.#options;
    for (let unit = 0; unit < this.#unitCount; unit++)
      if (!testBit(this.#used, unit)) setBit(this.#done, unit);
    if (parent && changedRanges) {
      const changed = bitmapFromRanges(changedRanges, this.#unitSize, this.#unitCount);
      for (let unit = 0; unit < this.#unitCount; unit++) {
        if (testBit(this.#used, unit) && testBit(parent.used, unit) && !testBit(changed, unit)) {
          const k = parent.units[unit]!;
          this.#units[unit] = k === 0 ? 0 : this.#slot(parent.chunkIds[k - 1]!);
          setBit(this.#done, unit);
        }
      }
    }
    if (resume) {
      // Only units used then and now: one free at the interruption was never read (it is zero in the map).
      const settled = reuse ? resume.done : undefined;
      for (let unit = 0; settled && unit < this.#unitCount; unit++) {
        if (testBit(settled, unit) && testBit(resume.used, unit) && testBit(this.#used, unit)) {
          const k = resume.units[unit]!;
          this.#units[unit] = k === 0 ? 0 : this.#slot(resume.chunkIds[k - 1]!);
          if (!testBit(this.#done, unit)) this.resumed!.reusedUnits += 1;
          setBit(this.#done, unit);
        }
      }
      this.#storedBytes = resume.stats.storedBytes;
      this.#newChunks = resume.stats.newChunks;
    }
    for (const range of this.rangesToRead()) this.#totalBytes += range.length;
  }

  /** The byte ranges the copier must read: used units not settled by the parent or a resumed checkpoint. */
  rangesToRead(): ByteRange[] {
    return rangesOfUnits(
      this.#unitCount,
      this.#unitSize,
      this.#options.source.size,
      (u) => !testBit(this.#done, u),
    );
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
    if (isAllZero(data)) {
      this.#settle(unit, 0, data.length);
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
        if (this.#isStored(id)) this.#settle(tags[i]!, this.#slot(id), length);
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

  #settle(unit: number, slot: number, length: number): void {
    // A backup that stores nothing new for long (an incremental of a big disk) still says it is alive.
    if (Date.now() - this.#refreshedAt >= REGISTRATION_REFRESH_MS) {
      this.#refreshing = this.#refreshRegistration().catch((error: Error) => {
        this.#failure ??= error;
      });
    }
    this.#units[unit] = slot;
    if (slot === 0) this.#zeroUnits += 1;
    if (!testBit(this.#done, unit)) {
      setBit(this.#done, unit);
      this.#doneBytes += length;
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
      units: this.#units.slice(),
      chunkIds: this.#chunkIds.slice(),
      done: this.#done.slice(),
      storedBytes: this.#storedBytes,
      newChunks: this.#newChunks,
      zeroUnits: this.#zeroUnits,
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

  #manifest(snapshot: Snapshot, complete: boolean): Manifest {
    const { source, partitions, parent, consistency } = this.#options;
    const parentManifest = parent ?? null;
    let usedUnits = 0;
    let changedUnits = 0;
    for (let unit = 0; unit < this.#unitCount; unit++) {
      if (!testBit(this.#used, unit)) continue;
      usedUnits += 1;
      const k = snapshot.units[unit]!;
      const mine = k === 0 ? null : snapshot.chunkIds[k - 1]!;
      if (!parentManifest || !testBit(parentManifest.used, unit)) {
        changedUnits += 1;
        continue;
      }
      const pk = parentManifest.units[unit]!;
      const theirs = pk === 0 ? null : parentManifest.chunkIds[pk - 1]!;
      if (mine === null ? theirs !== null : theirs === null || !mine.equals(theirs)) changedUnits += 1;
    }
    const lastUnitBytes = source.size - (this.#unitCount - 1) * this.#unitSize;
    const unitBytes = (count: number, includesLast: boolean) =>
      count * this.#unitSize - (includesLast ? this.#unitSize - lastUnitBytes : 0);
    const lastUsed = this.#unitCount > 0 && testBit(this.#used, this.#unitCount - 1);
    return {
      format: 1,
      id: this.pointId,
      time: this.#time,
      complete,
      parent: parentManifest?.id ?? null,
      consistency:
        (this.resumed?.reusedUnits ?? 0) > 0 && consistency !== 'offline' ? 'crash-consistent' : consistency,
      source,
      partitions,
      unitSize: this.#unitSize,
      unitCount: this.#unitCount,
      used: this.#used,
      ...(complete ? {} : { done: snapshot.done }),
      chunkIds: snapshot.chunkIds,
      units: snapshot.units,
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
   * Writes the index file of the packs written since the last commit, then the manifest: only files of this
   * backup's own, so no lock is taken and backups on many machines commit at once. A prune condemning packs
   * this point uses waits for this backup and rescues them (prune.ts), so nothing shared is rewritten here.
   */
  async #commit(snapshot: Snapshot, complete: boolean): Promise<Manifest> {
    const manifest = this.#manifest(snapshot, complete);
    // Only into the repository this backup opened: one removed, moved or replaced since fails here.
    await this.#repo.ensureHeld();
    // A prune that found this backup's registration expired (no refresh for half an hour) no longer waits
    // for it and may have deleted chunks it uses: such a backup must not commit.
    if (!(await stillRegistered(this.#repo.backend, this.pointId))) {
      throw new RepositoryError(
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
      for (const [key, entry] of entries) index?.entries.set(key, entry);
    }
    await this.#repo.writeManifest(manifest);
    return manifest;
  }

  /** Stores the registration again when due, so other machines' prunes see this backup alive. */
  async #refreshRegistration(): Promise<void> {
    if (Date.now() - this.#refreshedAt < REGISTRATION_REFRESH_MS) return;
    this.#refreshedAt = Date.now();
    await refreshBackup(this.#repo.backend, this.pointId, this.#options.source.path, this.#registeredAt);
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
      for (let unit = 0; unit < this.#unitCount; unit++) if (!testBit(this.#done, unit)) missing += 1;
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
