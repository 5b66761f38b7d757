// A Diskline repository opened for use: config and keys, the chunk index, manifests and the read API that
// mount, instant restore and restore use. Writing a point lives in point-writer.ts, pruning in prune.ts.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { PointSummary } from '../../protocol/model.ts';
import { LocalBackend } from '../backend/local.ts';
import type { Backend } from '../backend/types.ts';
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
import { ChunkIndex, INDEX_MAGIC, type IndexEntry } from './chunk-index.ts';
import { DamagedRepositoryError, RepositoryError } from './errors.ts';
import {
  DEFAULT_SCRYPT,
  deriveKeys,
  type EncryptionConfig,
  newMasterKey,
  type RepositoryKeys,
  unwrapMasterKey,
  WrongPassphraseError,
  wrapMasterKey,
} from './keys.ts';
import { decodeManifest, encodeManifest, MANIFEST_MAGIC, type Manifest } from './manifest.ts';
import { packFileName } from './pack.ts';
import { DamagedFileError, seal, unseal } from './sealed.ts';

export const FORMAT_VERSION = 2;
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
export const MIN_CHUNK_SIZE = 16 * 1024;
export const MAX_CHUNK_SIZE = 4 * 1024 * 1024;

/** A chunk (and snapshot unit) size this format allows: a power of two within the bounds. */
export function isChunkSize(size: unknown): size is number {
  return (
    typeof size === 'number' &&
    Number.isInteger(size) &&
    size >= MIN_CHUNK_SIZE &&
    size <= MAX_CHUNK_SIZE &&
    (size & (size - 1)) === 0
  );
}
export const DEFAULT_PACK_SIZE = 32 * 1024 * 1024;
export const PRUNE_MAGIC = 'DLPRUNE1';

export interface RepositoryConfig {
  format: number;
  id: string;
  chunkSize: number;
  compression: 'zstd';
  packSize: number;
  encryption: EncryptionConfig | null;
  /** base64; only in an unencrypted repository */
  masterKey: string | null;
}

export interface InitOptions {
  /** Required unless insecureNoEncryption. */
  password?: string | null;
  insecureNoEncryption?: boolean;
  chunkSize?: number;
  packSize?: number;
  scrypt?: { N: number; r: number; p: number };
}

/** A prune in progress: packs no point references, deleted once no older backup runs. */
export interface PruneRecord {
  name: string;
  time: string;
  packs: string[];
  phase: 'condemned' | 'deleting';
}

export function newId(): string {
  return randomBytes(16).toString('hex');
}

export function manifestName(pointId: string): string {
  return `points/${pointId}`;
}

/** The slice of a point that mount and instant restore need. */
export interface PointReader {
  readonly manifest: Manifest;
  /** Bytes of the disk at the point: zeros for unused units and beyond the chunks stored. */
  read(offset: number, length: number): Promise<Buffer>;
}

const DECODED_CACHE_CHUNKS = 64;
/** Group blobs kept decoded for readChunk: sequential reads take one group's chunks one after another. */
const RECENT_GROUPS = 4;

export class Repository {
  readonly path: string;
  readonly backend: Backend;
  readonly config: RepositoryConfig;
  readonly keys: RepositoryKeys;
  #index: ChunkIndex | null = null;
  readonly #recentGroups = new Map<string, Promise<{ blob: Buffer; plain: Buffer }>>();

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
    const directory = resolve(path);
    const existing = await readdir(directory).catch(() => null);
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
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!isChunkSize(chunkSize)) {
      throw new RepositoryError(
        `chunk size ${chunkSize} is not a power of two between ${MIN_CHUNK_SIZE >> 10} KiB and ${MAX_CHUNK_SIZE >> 20} MiB`,
        'usage',
      );
    }
    await mkdir(directory, { recursive: true });
    const backend = new LocalBackend(directory);
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
      packSize: options.packSize ?? DEFAULT_PACK_SIZE,
      encryption,
      masterKey: encryption ? null : masterKey.toString('base64'),
    };
    for (const folder of ['packs', 'index', 'points', 'locks', 'prune', 'tmp']) {
      await mkdir(resolve(directory, folder), { recursive: true });
    }
    await backend.put('config', Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
    return new Repository(directory, backend, config, deriveKeys(masterKey, id, encryption !== null));
  }

  static async open(path: string, options: { password?: string | null } = {}): Promise<Repository> {
    const directory = resolve(path);
    const backend = new LocalBackend(directory);
    let config: RepositoryConfig;
    try {
      config = JSON.parse((await backend.get('config')).toString('utf8')) as RepositoryConfig;
    } catch (error) {
      const missing =
        (error as NodeJS.ErrnoException).code === 'ENOENT' ||
        (error as NodeJS.ErrnoException).code === 'ENOTDIR';
      const exists = await stat(directory).then(
        () => true,
        () => false,
      );
      if (missing) {
        throw new RepositoryError(
          exists
            ? `${directory} is not a Diskline repository (no config file); create one with 'diskline init --repo ${path}'`
            : `repository ${directory} does not exist; create it with 'diskline init --repo ${path}'`,
        );
      }
      throw new DamagedRepositoryError(
        `repository ${directory} is damaged: its config file is not valid JSON`,
      );
    }
    if (typeof config.format !== 'number') {
      throw new DamagedRepositoryError(
        `repository ${directory} is damaged: its config has no format version`,
      );
    }
    if (!isChunkSize(config.chunkSize)) {
      throw new DamagedRepositoryError(
        `repository ${directory} is damaged: its config names chunk size ${config.chunkSize}`,
      );
    }
    if (config.format < FORMAT_VERSION) {
      throw new RepositoryError(
        `repository ${directory} uses format ${config.format}, which stored each chunk apart; this Diskline reads format ${FORMAT_VERSION} only — restore its points with the Diskline that made them, or back up into a new repository`,
      );
    }
    if (config.format > FORMAT_VERSION) {
      throw new RepositoryError(
        `repository ${directory} uses format ${config.format}; this Diskline reads format ${FORMAT_VERSION} only — upgrade Diskline to open it`,
      );
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
    } else if (config.masterKey) {
      masterKey = Buffer.from(config.masterKey, 'base64');
    } else {
      throw new DamagedRepositoryError(`repository ${directory} is damaged: its config holds no key`);
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

  // ---- sealed files ----

  async writeSealed(name: string, magic: string, plaintext: Buffer): Promise<void> {
    await this.backend.put(name, seal(this.keys, magic, plaintext));
  }

  async readSealed(name: string, magic: string, what: string): Promise<Buffer> {
    let file: Buffer;
    try {
      file = await this.backend.get(name);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT')
        throw new DamagedRepositoryError(`${what} is missing`);
      throw error;
    }
    try {
      return unseal(this.keys, magic, file, what);
    } catch (error) {
      if (error instanceof DamagedFileError) throw new DamagedRepositoryError(error.message);
      throw error;
    }
  }

  // ---- prune records ----

  async pruneRecords(): Promise<PruneRecord[]> {
    const records: PruneRecord[] = [];
    for (const name of (await this.backend.list('prune/')).sort()) {
      const body = await this.readSealed(name, PRUNE_MAGIC, `prune record ${name}`);
      records.push({ ...(JSON.parse(body.toString('utf8')) as Omit<PruneRecord, 'name'>), name });
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

  /** The union of index files minus condemned packs; cached until `reload`. */
  async loadIndex(reload = false): Promise<ChunkIndex> {
    if (this.#index && !reload) return this.#index;
    const condemned = new Set<string>();
    for (const record of await this.pruneRecords()) for (const pack of record.packs) condemned.add(pack);
    const index = new ChunkIndex();
    for (const name of await this.indexFiles()) {
      index.addFile(await this.readSealed(name, INDEX_MAGIC, `index file ${name}`), condemned);
    }
    this.#index = index;
    return index;
  }

  /** The index as last loaded, without touching storage. */
  loadIndexCached(): ChunkIndex | null {
    return this.#index;
  }

  // ---- manifests ----

  async pointIds(): Promise<string[]> {
    return (await this.backend.list('points/')).map((name) => name.slice('points/'.length));
  }

  async loadManifest(pointId: string): Promise<Manifest> {
    if (!/^[0-9a-f]{32}$/.test(pointId)) {
      throw new RepositoryError(
        `'${pointId}' is not a restore point id (32 hex digits); list them with 'diskline points'`,
      );
    }
    const what = `manifest of point ${pointId}`;
    if ((await this.backend.size(manifestName(pointId))) === null) {
      throw new RepositoryError(
        `no restore point ${pointId} in repository ${this.path}; list them with 'diskline points'`,
      );
    }
    const plaintext = await this.readSealed(manifestName(pointId), MANIFEST_MAGIC, what);
    try {
      return decodeManifest(plaintext, what);
    } catch (error) {
      if (error instanceof DamagedRepositoryError) throw error;
      throw new DamagedRepositoryError(`${what} is damaged: ${(error as Error).message}`);
    }
  }

  async writeManifest(manifest: Manifest): Promise<void> {
    await this.writeSealed(manifestName(manifest.id), MANIFEST_MAGIC, encodeManifest(manifest));
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
    for (const id of await this.pointIds()) {
      try {
        points.push(this.summarize(await this.loadManifest(id)));
      } catch (error) {
        damaged.push({ id, error: (error as Error).message });
      }
    }
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
    await this.loadIndex();
    const unitSize = manifest.unitSize;
    const cache = new Map<number, Promise<Buffer>>();
    const chunkOf = (unit: number): Promise<Buffer> | null => {
      const k = manifest.units[unit]!;
      if (k === 0) return null;
      let cached = cache.get(k);
      if (cached) {
        cache.delete(k);
        cache.set(k, cached);
        return cached;
      }
      cached = this.readChunk(manifest.chunkIds[k - 1]!);
      cached.catch(() => cache.delete(k));
      cache.set(k, cached);
      if (cache.size > DECODED_CACHE_CHUNKS) cache.delete(cache.keys().next().value!);
      return cached;
    };
    return {
      manifest,
      read: async (offset: number, length: number): Promise<Buffer> => {
        const end = Math.min(offset + length, manifest.source.size);
        if (offset >= end) return Buffer.alloc(0);
        const out = Buffer.alloc(end - offset);
        const first = Math.floor(offset / unitSize);
        const last = Math.floor((end - 1) / unitSize);
        const reads: Promise<void>[] = [];
        for (let unit = first; unit <= last; unit++) {
          const chunk = chunkOf(unit);
          if (!chunk) continue;
          const unitStart = unit * unitSize;
          reads.push(
            chunk.then((data) => {
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
