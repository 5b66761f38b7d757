// A Diskline repository opened for use: config and keys, the chunk index, manifests and the read API that
// mount, instant restore and restore use. Writing a point lives in point-writer.ts, pruning in prune.ts.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { PointSummary } from '../../protocol/model.ts';
import { CachedBackend } from '../backend/file-cache.ts';
import { nameBehind, RepositoryGoneError } from '../backend/held-directory.ts';
import { LocalBackend } from '../backend/local.ts';
import { S3Backend } from '../backend/s3/backend.ts';
import { isS3Location } from '../backend/s3/location.ts';
import { type Backend, UnsafeFileError } from '../backend/types.ts';
import { defaultStateDir } from '../config/state.ts';
import {
  ChunkDamage,
  DamagedChunkError,
  DamagedGroupError,
  decodeGroup,
  GROUP_HEADER_BYTES,
  groupHeader,
  groupHolds,
  MAX_GROUP_BYTES,
} from './chunk-codec.ts';
import {
  ChunkIndex,
  encodeIndexEntries,
  INDEX_FILE_MAX_BYTES,
  INDEX_MAGIC,
  type IndexEntry,
} from './chunk-index.ts';
import {
  CONFIG_MAX_BYTES,
  ConfigError,
  ConfigFormatError,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_PACK_SIZE,
  FORMAT_VERSION,
  isChunkSize,
  MAX_CHUNK_SIZE,
  MAX_PACK_SIZE,
  MIN_CHUNK_SIZE,
  MIN_PACK_SIZE,
  OLDEST_WRITABLE_FORMAT,
  parseConfig,
  type RepositoryConfig,
} from './config.ts';
import { DamagedRepositoryError, MissingFileError, RepositoryError } from './errors.ts';
import {
  DEFAULT_SCRYPT,
  deriveKeys,
  newMasterKey,
  passphraseWeakness,
  type RepositoryKeys,
  unwrapMasterKey,
  WrongPassphraseError,
  wrapMasterKey,
} from './keys.ts';
import {
  decodeLegacyManifest,
  type LegacyManifest,
  MANIFEST_MAGIC,
  MANIFEST_MAX_BYTES,
  type Manifest,
} from './manifest.ts';
import { packFileName } from './pack.ts';
import {
  decodePointHead,
  decodePointList,
  encodePointFile,
  headLength,
  isPointFile,
  manifestOf,
  POINT_LIST_MAX_BYTES,
  POINT_PREFIX_BYTES,
  type SegmentList,
} from './point-file.ts';
import { legacyPointMap, PointMap, segmentUnits, unsettledSegment } from './point-map.ts';
import { DamagedFileError, seal, unseal } from './sealed.ts';
import {
  chunkOf,
  decodeSegment,
  encodeSegment,
  SEGMENT_MAGIC,
  SEGMENT_MAX_BYTES,
  type Segment,
  segmentId,
  segmentName,
} from './segment.ts';

export {
  DEFAULT_CHUNK_SIZE,
  DEFAULT_PACK_SIZE,
  FORMAT_VERSION,
  isChunkSize,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  type RepositoryConfig,
};
export const PRUNE_MAGIC = 'DLPRUNE1';
/** A prune record lists pack ids (33 bytes each): 256 MiB is millions of packs. */
const PRUNE_RECORD_MAX_BYTES = 256 * 1024 * 1024;
/** The most a sealed file of each kind may hold on disk; a larger one is refused unread. */
const SEALED_MAX_BYTES: Record<string, number> = {
  [MANIFEST_MAGIC]: MANIFEST_MAX_BYTES,
  [INDEX_MAGIC]: INDEX_FILE_MAX_BYTES,
  [PRUNE_MAGIC]: PRUNE_RECORD_MAX_BYTES,
  [SEGMENT_MAGIC]: SEGMENT_MAX_BYTES,
};
/** Point heads read at once by listPoints. */
const LIST_READS = 8;
/** Decoded segments kept for readers that come back to them (mount reads, restore planning's two passes). */
const RECENT_SEGMENTS = 8;

export interface OpenOptions {
  password?: string | null;
  /**
   * Where remote repositories keep a local copy of their index files and manifests (one folder per repository
   * id); by default the engine's state folder's `cache`; null for none.
   */
  cacheDir?: string | null;
}

export interface InitOptions {
  /** Required unless insecureNoEncryption; at least of the strength passphraseWeakness asks for. */
  password?: string | null;
  insecureNoEncryption?: boolean;
  /** Accept a passphrase passphraseWeakness refuses (`init --insecure-weak-passphrase`). */
  insecureWeakPassphrase?: boolean;
  /** Folders 0750 and files 0640 instead of 0700 and 0600: the directory's group may read (and copy) it. */
  groupReadable?: boolean;
  chunkSize?: number;
  packSize?: number;
  scrypt?: { N: number; r: number; p: number };
}

/** Whether the repository directory lets its group read: files are then made group-readable too. */
function groupReadable(mode: number): boolean {
  return (mode & 0o040) !== 0;
}

/** A prune in progress: packs no point references, deleted once no older backup runs. */
export interface PruneRecord {
  name: string;
  time: string;
  packs: string[];
  phase: 'condemned' | 'deleting';
}

/** The point asked for is not in the repository (never was, or a prune forgot it). */
export class PointNotFoundError extends RepositoryError {}

export function newId(): string {
  return randomBytes(16).toString('hex');
}

export function manifestName(pointId: string): string {
  return `points/${pointId}`;
}

/** The slice of a point that mount and instant restore need. */
export interface PointReader {
  readonly manifest: Manifest;
  readonly map: PointMap;
  /** Bytes of the disk at the point: zeros for unused units and beyond the chunks stored. */
  read(offset: number, length: number): Promise<Buffer>;
  /** Whether the unit reads as zeros (unused, or all zero when backed up). */
  isZeroUnit(unit: number): Promise<boolean>;
  /** Calls `visit` with every unit that reads as zeros, in order, reading the map a segment at a time. */
  forEachZeroUnit(visit: (unit: number) => void): Promise<void>;
}

const DECODED_CACHE_CHUNKS = 64;
/** Loads of the index started over because a concurrent prune replaced an index file, before that is damage. */
const INDEX_LOAD_ATTEMPTS = 5;
/** Group blobs kept decoded for readChunk: sequential reads take one group's chunks one after another. */
const RECENT_GROUPS = 4;

export class Repository {
  readonly path: string;
  readonly backend: Backend;
  readonly config: RepositoryConfig;
  readonly keys: RepositoryKeys;
  #index: ChunkIndex | null = null;
  readonly #recentGroups = new Map<string, Promise<{ blob: Buffer; plain: Buffer }>>();
  readonly #recentSegments = new Map<string, Promise<Segment>>();
  /** Segments known to be stored (written or read by this object): not written again. */
  readonly #storedSegments = new Set<string>();

  private constructor(path: string, backend: Backend, config: RepositoryConfig, keys: RepositoryKeys) {
    this.path = path;
    this.backend = backend;
    this.config = config;
    this.keys = keys;
  }

  get chunkSize(): number {
    return this.config.chunkSize;
  }

  static async init(path: string, options: InitOptions): Promise<Repository> {
    const remote = isS3Location(path);
    const directory = remote ? path : resolve(path);
    const existing = remote ? null : await readdir(directory).catch(() => null);
    if (existing && existing.length > 0) {
      throw new RepositoryError(
        `cannot create a repository in ${directory}: the directory is not empty`,
        'refusal',
      );
    }
    if (!options.insecureNoEncryption && !options.password) {
      throw new RepositoryError(
        'a passphrase is needed to create an encrypted repository: set DISKLINE_PASSWORD or pass --password-file ' +
          '(or --insecure-no-encryption for a repository anyone can read)',
        'usage',
      );
    }
    const weakness =
      options.insecureNoEncryption || options.insecureWeakPassphrase
        ? null
        : passphraseWeakness(options.password!);
    if (weakness) {
      throw new RepositoryError(
        `the passphrase is too weak to guard a repository: ${weakness}; or pass --insecure-weak-passphrase`,
        'usage',
      );
    }
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!isChunkSize(chunkSize)) {
      throw new RepositoryError(
        `chunk size ${chunkSize} is not a power of two between ${MIN_CHUNK_SIZE >> 10} KiB and ${MAX_CHUNK_SIZE >> 20} MiB`,
        'usage',
      );
    }
    const packSize = options.packSize ?? DEFAULT_PACK_SIZE;
    if (!Number.isInteger(packSize) || packSize < MIN_PACK_SIZE || packSize > MAX_PACK_SIZE) {
      throw new RepositoryError(
        `pack size ${packSize} is not between ${MIN_PACK_SIZE >> 10} KiB and ${MAX_PACK_SIZE >> 30} GiB`,
        'usage',
      );
    }
    const folderMode = options.groupReadable ? 0o750 : 0o700;
    let backend: Backend;
    if (remote) {
      // An object store has no folders and no empty directory to check: "empty" is no object under the prefix.
      const store = new S3Backend(path);
      await store.ensureBucket();
      if ((await store.list('')).length > 0) {
        throw new RepositoryError(
          `cannot create a repository at ${store.location}: objects already exist there`,
          'refusal',
        );
      }
      backend = store;
    } else {
      await mkdir(directory, { recursive: true, mode: folderMode });
      // An existing empty directory takes the repository's mode too: the config's wrapped key is not for others.
      await chmod(directory, folderMode);
      backend = await LocalBackend.open(directory, { groupReadable: options.groupReadable ?? false });
    }
    const id = newId();
    const masterKey = newMasterKey();
    const encryption = options.insecureNoEncryption
      ? null
      : await wrapMasterKey(masterKey, options.password!, options.scrypt ?? DEFAULT_SCRYPT);
    const config: RepositoryConfig = {
      format: FORMAT_VERSION,
      id,
      chunkSize,
      compression: 'zstd',
      packSize,
      encryption,
      masterKey: encryption ? null : masterKey.toString('base64'),
    };
    if (!remote) {
      for (const folder of ['packs', 'index', 'points', 'locks', 'prune', 'tmp']) {
        await mkdir(resolve(directory, folder), { recursive: true, mode: folderMode });
      }
    }
    try {
      await backend.put('config', Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
    } catch (error) {
      await backend.close();
      throw error;
    }
    return new Repository(backend.location, backend, config, deriveKeys(masterKey, id, encryption !== null));
  }

  static async open(path: string, options: OpenOptions = {}): Promise<Repository> {
    if (isS3Location(path)) {
      const store = new CachedBackend(new S3Backend(path));
      const repo = await Repository.#load(path, store.location, store, options);
      // Keyed by the repository's id: the same repository under another location shares its cache.
      if (options.cacheDir !== null)
        await store.attach(join(options.cacheDir ?? join(defaultStateDir(), 'cache'), repo.config.id));
      return repo;
    }
    // A repository the engine holds comes as its descriptor's link: messages name the repository it stands for.
    const held = path !== (await nameBehind(path));
    const directory = held ? await nameBehind(path) : resolve(path);
    const directoryMode = await stat(path).then(
      (stats) => stats.mode,
      () => null,
    );
    const backend = await LocalBackend.open(held ? path : directory, {
      groupReadable: directoryMode !== null && groupReadable(directoryMode),
    }).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT')
        throw new RepositoryError(
          `repository ${directory} does not exist; create it with 'diskline init --repo ${path}'`,
        );
      if (error.code === 'ENOTDIR')
        throw new RepositoryError(`${directory} is not a Diskline repository (not a directory)`);
      throw error;
    });
    try {
      return await Repository.#load(path, directory, backend, options);
    } catch (error) {
      await backend.close();
      throw error;
    }
  }

  static async #load(
    path: string,
    directory: string,
    backend: Backend,
    options: { password?: string | null },
  ): Promise<Repository> {
    const damaged = (problem: string) =>
      new DamagedRepositoryError(`repository ${directory} is damaged: ${problem}`);
    let config: RepositoryConfig;
    try {
      config = parseConfig(await backend.get('config', CONFIG_MAX_BYTES));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new RepositoryError(
          `${directory} is not a Diskline repository (no config file); create one with 'diskline init --repo ${path}'`,
        );
      }
      if (error instanceof RepositoryGoneError) throw error;
      if (error instanceof UnsafeFileError) throw damaged(error.message);
      if (error instanceof ConfigError) throw damaged(`its config ${error.message}`);
      if (error instanceof ConfigFormatError) {
        throw new RepositoryError(
          error.format === 1
            ? `repository ${directory} uses format 1, which stored each chunk apart; this Diskline reads formats 2 to ${FORMAT_VERSION} only — restore its points with the Diskline that made them, or back up into a new repository`
            : `repository ${directory} uses format ${error.format}; this Diskline reads formats 2 to ${FORMAT_VERSION} only — upgrade Diskline to open it`,
        );
      }
      throw error;
    }
    let masterKey: Buffer;
    if (config.encryption) {
      if (!options.password) {
        throw new RepositoryError(
          `repository ${directory} is encrypted: set DISKLINE_PASSWORD or pass --password-file`,
          'usage',
        );
      }
      try {
        masterKey = await unwrapMasterKey(config.encryption, options.password);
      } catch (error) {
        if (error instanceof WrongPassphraseError) {
          throw new RepositoryError(`wrong passphrase for repository ${directory}`);
        }
        throw error;
      }
    } else {
      masterKey = Buffer.from(config.masterKey!, 'base64');
    }
    return new Repository(
      directory,
      backend,
      config,
      deriveKeys(masterKey, config.id, config.encryption !== null),
    );
  }

  async close(): Promise<void> {
    await this.backend.close();
  }

  /**
   * Before a backup writes a segmented point: a format 3 repository's config is rewritten as format 4 (only
   * that field changes), so an older Diskline refuses the repository instead of calling its new points damaged.
   * A format 2 repository binds no names to its sealed files and takes no new points.
   */
  async prepareForPoints(): Promise<void> {
    if (this.config.format >= FORMAT_VERSION) return;
    if (this.config.format < OLDEST_WRITABLE_FORMAT)
      throw new RepositoryError(
        `repository ${this.path} uses format ${this.config.format}: this Diskline restores from it but backs up only into format ${OLDEST_WRITABLE_FORMAT} or later; back up into a new repository`,
      );
    const stored = JSON.parse((await this.backend.get('config', CONFIG_MAX_BYTES)).toString('utf8'));
    parseConfig(Buffer.from(JSON.stringify(stored)));
    await this.backend.put(
      'config',
      Buffer.from(`${JSON.stringify({ ...stored, format: FORMAT_VERSION }, null, 2)}\n`),
    );
    this.config.format = FORMAT_VERSION;
  }

  /**
   * Fails with what happened when this repository was removed, moved or replaced since it was opened, or its
   * config is gone (it is being deleted): a job must not report success for a repository nobody can find.
   */
  async ensureHeld(): Promise<void> {
    await this.backend.ensureHeld();
    if ((await this.backend.size('config')) === null) {
      throw new RepositoryError(
        `repository ${this.path} lost its config file while in use (it is being deleted or emptied); nothing more was written`,
      );
    }
  }

  // ---- sealed files ----

  /** The name a sealed file's check covers: its own from format 3 on; none in a format 2 repository. */
  #boundName(name: string): string | null {
    return this.config.format >= 3 ? name : null;
  }

  async writeSealed(name: string, magic: string, plaintext: Buffer): Promise<void> {
    await this.backend.put(name, seal(this.keys, magic, plaintext, this.#boundName(name)));
  }

  /** A sealed file's plaintext, read with its kind's size limit; a DamagedRepositoryError saying what is wrong. */
  async readSealed(name: string, magic: string, what: string, retried = false): Promise<Buffer> {
    let file: Buffer;
    try {
      file = await this.backend.get(name, SEALED_MAX_BYTES[magic] ?? CONFIG_MAX_BYTES);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT')
        throw new MissingFileError(`${what} is missing`);
      if (error instanceof UnsafeFileError)
        throw new DamagedRepositoryError(`${what} is damaged: ${error.message}`);
      throw error;
    }
    try {
      return unseal(this.keys, magic, file, what, this.#boundName(name));
    } catch (error) {
      if (!(error instanceof DamagedFileError)) throw error;
      // A local copy is never trusted over the store: one that fails is dropped and the file read again.
      if (!retried && this.backend instanceof CachedBackend && (await this.backend.evict(name)))
        return this.readSealed(name, magic, what, true);
      throw new DamagedRepositoryError(error.message);
    }
  }

  // ---- prune records ----

  async pruneRecords(): Promise<PruneRecord[]> {
    const records: PruneRecord[] = [];
    for (const name of (await this.backend.list('prune/')).sort()) {
      const what = `prune record ${name}`;
      const body = JSON.parse((await this.readSealed(name, PRUNE_MAGIC, what)).toString('utf8')) as Omit<
        PruneRecord,
        'name'
      >;
      // Its name starts with its time (digits only): a record under another record's name is damage.
      if (typeof body.time !== 'string' || !name.startsWith(`prune/${body.time.replace(/[-:.]/g, '')}-`))
        throw new DamagedRepositoryError(`${what} is damaged: it holds the record of ${body.time}`);
      records.push({ ...body, name });
    }
    return records;
  }

  async writePruneRecord(record: PruneRecord): Promise<void> {
    const { name, ...body } = record;
    await this.writeSealed(name, PRUNE_MAGIC, Buffer.from(JSON.stringify(body)));
  }

  // ---- index ----

  async indexFiles(): Promise<string[]> {
    return (await this.backend.list('index/')).sort();
  }

  /**
   * The union of index files, condemned packs for reading only; cached until `reload`. A prune on another
   * machine may replace index files between the listing and the reads (it writes the new file before it deletes
   * the old ones): an index file gone meanwhile makes the load start over, a few times, before it is damage.
   */
  async loadIndex(reload = false): Promise<ChunkIndex> {
    if (this.#index && !reload) return this.#index;
    for (let attempt = 1; ; attempt++) {
      const condemned = new Set<string>();
      for (const record of await this.pruneRecords()) for (const pack of record.packs) condemned.add(pack);
      const index = new ChunkIndex();
      let vanished = false;
      for (const name of await this.indexFiles()) {
        let plaintext: Buffer;
        try {
          plaintext = await this.readSealed(name, INDEX_MAGIC, `index file ${name}`);
        } catch (error) {
          if (!(error instanceof MissingFileError) || attempt >= INDEX_LOAD_ATTEMPTS) throw error;
          vanished = true;
          break;
        }
        index.addFile(plaintext, condemned);
      }
      if (vanished) continue;
      this.#index = index;
      return index;
    }
  }

  /**
   * Writes `entries` as index files of at most `entriesPerFile` each (the format's limit, smaller in tests). When
   * it throws, some files may be written: their entries written again later are harmless duplicates.
   */
  async writeIndexFiles(entries: readonly [string, IndexEntry][], entriesPerFile: number): Promise<void> {
    for (let from = 0; from < entries.length; from += entriesPerFile) {
      await this.writeIndexFile(
        `index/${newId()}`,
        entries,
        from,
        Math.min(entries.length, from + entriesPerFile),
      );
    }
  }

  /** One index file `name` holding entries [from, to). */
  async writeIndexFile(
    name: string,
    entries: readonly [string, IndexEntry][],
    from: number,
    to: number,
  ): Promise<void> {
    await this.writeSealed(name, INDEX_MAGIC, encodeIndexEntries(entries, from, to));
  }

  /** The index as last loaded, without touching storage. */
  loadIndexCached(): ChunkIndex | null {
    return this.#index;
  }

  // ---- manifests ----

  async pointIds(): Promise<string[]> {
    return (await this.backend.list('points/')).map((name) => name.slice('points/'.length));
  }

  /** A point's head (its file is read whole; a segmented point's list is not decoded). */
  async loadManifest(pointId: string): Promise<Manifest> {
    return (await this.#readPoint(pointId, false)).manifest;
  }

  /** A point's map, to be read a segment at a time (a format 3 manifest is read whole, as it is stored). */
  async openMap(manifestOrId: Manifest | string): Promise<PointMap> {
    const id = typeof manifestOrId === 'string' ? manifestOrId : manifestOrId.id;
    const { manifest, list, legacy } = await this.#readPoint(id, true);
    if (legacy) return legacyPointMap(this.keys, legacy);
    return new PointMap(manifest, list!, async (index) => {
      const segmentIdAt = list!.id(index);
      const units = segmentUnits(manifest.unitCount, manifest.unitsPerSegment, index);
      if (!segmentIdAt) return unsettledSegment(units);
      const segment = await this.readSegment(segmentIdAt, `segment ${index} of point ${id}`);
      if (segment.unitCount !== units)
        throw new DamagedRepositoryError(
          `point ${id} is damaged: its segment ${index} covers ${segment.unitCount} units, not ${units}`,
        );
      return segment;
    });
  }

  async #readPoint(
    pointId: string,
    withMap: boolean,
    retried = false,
  ): Promise<{ manifest: Manifest; list: SegmentList | null; legacy: LegacyManifest | null }> {
    if (!/^[0-9a-f]{32}$/.test(pointId)) {
      throw new RepositoryError(
        `'${pointId}' is not a restore point id (32 hex digits); list them with 'diskline points'`,
      );
    }
    const what = `manifest of point ${pointId}`;
    const name = manifestName(pointId);
    // No size check first: one request per point, not two (a missing one is told by the read). Read whole, not
    // by ranges: a point file is replaced by each checkpoint, and range reads may be served from a handle held
    // on the file it replaced. A segmented point's file is its head and a list of 48 bytes per GiB of disk; only
    // the head is opened unless the map is wanted.
    let file: Buffer;
    try {
      file = await this.backend.get(name, MANIFEST_MAX_BYTES);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT')
        throw new PointNotFoundError(
          `no restore point ${pointId} in repository ${this.path}; list them with 'diskline points'`,
        );
      if (error instanceof UnsafeFileError)
        throw new DamagedRepositoryError(`${what} is damaged: ${error.message}`);
      throw error;
    }
    let manifest: Manifest;
    let list: SegmentList | null = null;
    let legacy: LegacyManifest | null = null;
    try {
      const bound = this.#boundName(name);
      if (isPointFile(file)) {
        const length = headLength(file, file.length, what);
        const head = decodePointHead(
          this.keys,
          file.subarray(POINT_PREFIX_BYTES, POINT_PREFIX_BYTES + length),
          bound,
          what,
        );
        manifest = manifestOf(head);
        if (withMap) {
          const listAt = POINT_PREFIX_BYTES + length;
          if (file.length - listAt > POINT_LIST_MAX_BYTES)
            throw new DamagedFileError(`${what} is damaged: its segment list is larger than any disk's`);
          list = decodePointList(this.keys, head, file.subarray(listAt), bound, what);
        }
      } else {
        // A format 3 manifest: the whole map in one sealed file.
        legacy = decodeLegacyManifest(unseal(this.keys, MANIFEST_MAGIC, file, what, bound), what);
        const { used: _u, chunkIds: _c, units: _n, done, ...head } = legacy;
        // Its settled map is cut with its segments: every one of them is partial.
        const segments = Math.ceil(head.unitCount / head.unitsPerSegment);
        manifest = done ? { ...head, partialSegments: Array.from({ length: segments }, (_, i) => i) } : head;
      }
    } catch (error) {
      // A local copy is never trusted over the store: one that fails is dropped and the file read again.
      if (!retried && this.backend instanceof CachedBackend && (await this.backend.evict(name)))
        return this.#readPoint(pointId, withMap, true);
      if (error instanceof DamagedRepositoryError) throw error;
      throw new DamagedRepositoryError(
        error instanceof DamagedFileError ? error.message : `${what} is damaged: ${(error as Error).message}`,
      );
    }
    // The one check a format 2 manifest has against being copied or moved to another point's name.
    if (manifest.id !== pointId) {
      if (!retried && this.backend instanceof CachedBackend && (await this.backend.evict(name)))
        return this.#readPoint(pointId, withMap, true);
      throw new DamagedRepositoryError(
        `${what} is damaged: it holds point ${manifest.id} (a manifest copied or moved to another name)`,
      );
    }
    return { manifest, list, legacy };
  }

  /** Writes a point's file: its head and segment list (every segment it names is stored already). */
  async writePoint(manifest: Manifest, list: SegmentList): Promise<void> {
    const name = manifestName(manifest.id);
    await this.backend.put(name, encodePointFile(this.keys, this.#boundName(name), manifest, list));
  }

  // ---- segments ----

  /** Stores a segment unless it is stored already (its name is its content's keyed hash); returns its id. */
  async writeSegment(segment: Segment): Promise<Buffer> {
    const plaintext = encodeSegment(segment);
    const id = segmentId(this.keys.idKey, plaintext);
    const key = id.toString('hex');
    if (this.#storedSegments.has(key)) return id;
    const name = segmentName(id);
    if ((await this.backend.size(name)) === null) await this.writeSealed(name, SEGMENT_MAGIC, plaintext);
    this.#storedSegments.add(key);
    return id;
  }

  /** A segment, checked: its seal (bound to its name) and its content's hash against its id. */
  async readSegment(id: Buffer, what = `segment ${id.toString('hex').slice(0, 16)}`): Promise<Segment> {
    const key = id.toString('hex');
    let cached = this.#recentSegments.get(key);
    if (cached) {
      this.#recentSegments.delete(key);
      this.#recentSegments.set(key, cached);
      return cached;
    }
    cached = (async () => {
      const plaintext = await this.readSealed(segmentName(id), SEGMENT_MAGIC, what);
      if (!segmentId(this.keys.idKey, plaintext).equals(id))
        throw new DamagedRepositoryError(`${what} is damaged: its content is not the segment its name says`);
      try {
        return decodeSegment(plaintext, what);
      } catch (error) {
        throw new DamagedRepositoryError((error as Error).message);
      }
    })();
    cached.catch(() => this.#recentSegments.delete(key));
    this.#recentSegments.set(key, cached);
    if (this.#recentSegments.size > RECENT_SEGMENTS)
      this.#recentSegments.delete(this.#recentSegments.keys().next().value!);
    const segment = await cached;
    this.#storedSegments.add(key);
    return segment;
  }

  /** Forgets which segments are stored (a prune deleted some). */
  forgetStoredSegments(): void {
    this.#storedSegments.clear();
    this.#recentSegments.clear();
  }

  /** Accepts a full id or a unique prefix of at least 4 hex digits, or 'latest'. */
  async resolvePointId(reference: string): Promise<string> {
    const ids = await this.pointIds();
    if (reference === 'latest') {
      const points = (await this.listPoints()).points.filter((p) => p.complete);
      if (points.length === 0)
        throw new RepositoryError(`repository ${this.path} has no complete restore point`);
      return points[points.length - 1]!.id;
    }
    if (ids.includes(reference)) return reference;
    const matches = reference.length >= 4 ? ids.filter((id) => id.startsWith(reference)) : [];
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1)
      throw new RepositoryError(`point id '${reference}' is ambiguous: it starts ${matches.length} ids`);
    throw new RepositoryError(
      `no restore point '${reference}' in repository ${this.path}; list them with 'diskline points'`,
    );
  }

  /** Every point whose manifest opens, oldest first, and the ids of those that do not. */
  async listPoints(): Promise<{ points: PointSummary[]; damaged: { id: string; error: string }[] }> {
    const points: PointSummary[] = [];
    const damaged: { id: string; error: string }[] = [];
    const ids = await this.pointIds();
    // Heads only, several read at once: a timeline of a thousand points waits on a thousand small reads.
    let next = 0;
    const reader = async () => {
      while (next < ids.length) {
        const id = ids[next++]!;
        try {
          points.push(this.summarize(await this.loadManifest(id)));
        } catch (error) {
          // Forgotten by a prune between the listing and the read: not damage, just gone.
          if (error instanceof PointNotFoundError) continue;
          damaged.push({ id, error: (error as Error).message });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(LIST_READS, ids.length) }, reader));
    damaged.sort((a, b) => a.id.localeCompare(b.id));
    points.sort((a, b) => a.time.localeCompare(b.time) || a.id.localeCompare(b.id));
    return { points, damaged };
  }

  summarize(manifest: Manifest): PointSummary {
    return {
      id: manifest.id,
      repo: this.path,
      time: manifest.time,
      source: manifest.source.path,
      sourceSize: manifest.source.size,
      consistency: manifest.consistency,
      parent: manifest.parent,
      usedBytes: manifest.stats.usedBytes,
      changedBytes: manifest.stats.changedBytes,
      storedBytes: manifest.stats.storedBytes,
      complete: manifest.complete,
      verify: 'unverified',
      drill: null,
    };
  }

  // ---- chunks ----

  /**
   * Reads and checks the group blob an index entry points into; returns the blob and its plain bytes. With
   * `checkIds` every member's keyed hash is recomputed (verify --read-data).
   */
  async readGroup(entry: IndexEntry, checkIds = false): Promise<{ blob: Buffer; plain: Buffer }> {
    const where = `the group at ${entry.blobOffset} of pack ${entry.pack}`;
    let blob: Buffer;
    try {
      blob = await this.backend.getRange(packFileName(entry.pack), entry.blobOffset, entry.blobLength);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new DamagedRepositoryError(`pack ${entry.pack} is missing (it holds ${where})`);
      }
      if (error instanceof UnsafeFileError)
        throw new DamagedRepositoryError(`pack ${entry.pack} is damaged: ${error.message}`);
      throw error;
    }
    if (blob.length < entry.blobLength)
      throw new DamagedRepositoryError(`pack ${entry.pack} is truncated: ${where} is cut`);
    const { rawLength } = blob.length >= GROUP_HEADER_BYTES ? groupHeader(blob) : { rawLength: 0 };
    const plain = Buffer.allocUnsafe(Math.min(rawLength, MAX_GROUP_BYTES));
    const damage = decodeGroup(this.keys, checkIds, blob, plain);
    if (damage !== 0) throw new DamagedGroupError(damage);
    return { blob, plain };
  }

  /** Reads and checks one chunk. `checkId` recomputes its keyed hash. The last few groups read are kept. */
  async readChunk(id: Buffer, checkId = false): Promise<Buffer> {
    const index = await this.loadIndex();
    const entry = index.get(id);
    const hex = id.toString('hex').slice(0, 16);
    if (!entry)
      throw new DamagedRepositoryError(`chunk ${hex} is not in the index (its pack was lost or pruned)`);
    const key = `${entry.pack}:${entry.blobOffset}`;
    let group = checkId ? undefined : this.#recentGroups.get(key);
    if (!group) {
      group = this.readGroup(entry, checkId);
      if (!checkId) {
        this.#recentGroups.set(key, group);
        group.catch(() => this.#recentGroups.delete(key));
        if (this.#recentGroups.size > RECENT_GROUPS)
          this.#recentGroups.delete(this.#recentGroups.keys().next().value!);
      }
    }
    let read: { blob: Buffer; plain: Buffer };
    try {
      read = await group;
    } catch (error) {
      if (error instanceof DamagedGroupError)
        throw new DamagedRepositoryError(
          `pack ${entry.pack}: ${new DamagedChunkError(id, error.damage).message}`,
        );
      throw error;
    }
    if (!groupHolds(read.blob, id, entry.rawOffset, entry.rawLength)) {
      throw new DamagedRepositoryError(
        `pack ${entry.pack}: ${new DamagedChunkError(id, ChunkDamage.otherId).message}`,
      );
    }
    return read.plain.subarray(entry.rawOffset, entry.rawOffset + entry.rawLength);
  }

  /** The read API for mount and instant restore: a complete point's bytes at any offset. */
  async openPoint(pointId: string): Promise<PointReader> {
    const manifest = await this.loadManifest(pointId);
    if (!manifest.complete) {
      throw new RepositoryError(
        `restore point ${pointId} is incomplete (its backup was interrupted); resume the backup first`,
      );
    }
    const map = await this.openMap(manifest);
    await this.loadIndex();
    const unitSize = manifest.unitSize;
    const perSegment = manifest.unitsPerSegment;
    const cache = new Map<string, Promise<Buffer>>();
    const chunkAt = async (unit: number): Promise<Buffer | null> => {
      const segment = await map.segment(Math.floor(unit / perSegment));
      const id = chunkOf(segment, unit % perSegment);
      if (!id) return null;
      const key = id.toString('latin1');
      let cached = cache.get(key);
      if (cached) {
        cache.delete(key);
        cache.set(key, cached);
        return cached;
      }
      cached = this.readChunk(id);
      cached.catch(() => cache.delete(key));
      cache.set(key, cached);
      if (cache.size > DECODED_CACHE_CHUNKS) cache.delete(cache.keys().next().value!);
      return cached;
    };
    return {
      manifest,
      map,
      isZeroUnit: async (unit) =>
        (await map.segment(Math.floor(unit / perSegment))).units[unit % perSegment] === 0,
      forEachZeroUnit: async (visit) => {
        for await (const { firstUnit, segment } of map.segments())
          for (let u = 0; u < segment.unitCount; u++) if (segment.units[u] === 0) visit(firstUnit + u);
      },
      read: async (offset: number, length: number): Promise<Buffer> => {
        const end = Math.min(offset + length, manifest.source.size);
        if (offset >= end) return Buffer.alloc(0);
        const out = Buffer.alloc(end - offset);
        const first = Math.floor(offset / unitSize);
        const last = Math.floor((end - 1) / unitSize);
        const reads: Promise<void>[] = [];
        for (let unit = first; unit <= last; unit++) {
          const unitStart = unit * unitSize;
          reads.push(
            chunkAt(unit).then((data) => {
              if (!data) return;
              const from = Math.max(offset, unitStart);
              const to = Math.min(end, unitStart + data.length);
              if (to > from) data.copy(out, from - offset, from - unitStart, to - unitStart);
            }),
          );
        }
        await Promise.all(reads);
        return out;
      },
    };
  }
}
