// A local copy of a remote repository's small, often-read files (index files and manifests), so that listing
// points and planning a backup or a restore read them from the local disk: a warm open costs one listing per
// folder instead of one request per file. It is only a cache: a file is used only when the listing just made
// names it with the same version (ETag) and size, the repository checks every file it reads as it would from
// the store (sealed, bound to its name), and a copy that fails is dropped and read again from the store.
// Deleting the cache folder changes nothing but speed. Failures to write the cache are ignored.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Backend, ListedFile, VersionedListing } from './types.ts';

/** The folders whose files are cached: written once (index) or rarely (a manifest, replaced at the commit). */
const CACHED_FOLDERS = ['index/', 'points/'];
/** What a version may look like to become part of a file name (an ETag: hex, maybe "-parts"). */
const SAFE_VERSION = /^[0-9A-Za-z-]{1,80}$/;
const SAFE_BASENAME = /^[0-9a-f]{1,64}$/;

export class CachedBackend implements Backend {
  readonly #inner: Backend & VersionedListing;
  #dir: string | null = null;
  /** Files of the cached folders as last listed. */
  readonly #listed = new Map<string, ListedFile>();
  /** Reads of cached folders' files served from the cache and from the store (tests and benchmarks read them). */
  hits = 0;
  misses = 0;

  constructor(inner: Backend & VersionedListing) {
    this.#inner = inner;
  }

  get location(): string {
    return this.#inner.location;
  }

  get writesInFlight(): number | undefined {
    return this.#inner.writesInFlight;
  }

  /** Starts caching into `dir` (made 0700: manifests are sealed, but their sizes are the user's business). */
  async attach(dir: string): Promise<void> {
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      for (const folder of CACHED_FOLDERS) await mkdir(join(dir, folder), { recursive: true, mode: 0o700 });
      this.#dir = dir;
    } catch {
      this.#dir = null; // No cache, not a failure: everything is read from the store.
    }
  }

  #cachedPath(name: string): string | null {
    const folder = CACHED_FOLDERS.find((prefix) => name.startsWith(prefix));
    const listed = this.#listed.get(name);
    if (!this.#dir || !folder || !listed || !SAFE_VERSION.test(listed.version)) return null;
    const base = name.slice(folder.length);
    if (!SAFE_BASENAME.test(base)) return null;
    return join(this.#dir, folder, `${base}@${listed.version}`);
  }

  async list(prefix: string): Promise<string[]> {
    if (!CACHED_FOLDERS.includes(prefix)) return this.#inner.list(prefix);
    const files = await this.#inner.listVersions(prefix);
    for (const name of [...this.#listed.keys()]) if (name.startsWith(prefix)) this.#listed.delete(name);
    for (const file of files) this.#listed.set(file.name, file);
    await this.#dropUnlisted(prefix);
    return files.map((file) => file.name);
  }

  /** Removes cached copies of files no longer listed, or listed at another version. */
  async #dropUnlisted(prefix: string): Promise<void> {
    if (!this.#dir) return;
    const folder = join(this.#dir, prefix);
    const wanted = new Set<string>();
    for (const name of this.#listed.keys()) {
      const path = name.startsWith(prefix) ? this.#cachedPath(name) : null;
      if (path) wanted.add(path.slice(folder.length));
    }
    const present = await readdir(folder).catch(() => [] as string[]);
    for (const entry of present) {
      if (!wanted.has(entry)) await rm(join(folder, entry), { force: true }).catch(() => undefined);
    }
  }

  async get(name: string, maxBytes: number): Promise<Buffer> {
    const path = this.#cachedPath(name);
    const listed = this.#listed.get(name);
    if (path && listed && listed.size <= maxBytes) {
      const copy = await readFile(path).catch(() => null);
      if (copy && copy.length === listed.size) {
        this.hits += 1;
        return copy;
      }
    }
    if (path) this.misses += 1;
    const bytes = await this.#inner.get(name, maxBytes);
    if (path && listed && bytes.length === listed.size) {
      // Whole or not at all: a temp name, then a rename.
      const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
      try {
        await writeFile(temp, bytes, { mode: 0o600 });
        await rename(temp, path);
      } catch {
        await rm(temp, { force: true }).catch(() => undefined);
      }
    }
    return bytes;
  }

  /** Drops the cached copy of `name`; true when there was one (so a failed check may try the store). */
  async evict(name: string): Promise<boolean> {
    const path = this.#cachedPath(name);
    if (!path) return false;
    const had = await readFile(path).then(
      () => true,
      () => false,
    );
    await rm(path, { force: true }).catch(() => undefined);
    return had;
  }

  getRange(name: string, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.#inner.getRange(name, offset, length, into);
  }

  async put(name: string, data: Buffer | readonly Buffer[]): Promise<void> {
    this.#listed.delete(name);
    await this.#inner.put(name, data);
  }

  async create(name: string, data: Buffer): Promise<void> {
    await this.#inner.create(name, data);
  }

  async delete(name: string): Promise<void> {
    await this.evict(name);
    this.#listed.delete(name);
    await this.#inner.delete(name);
  }

  /** From the listing for cached folders (no request per manifest); else from the store. */
  async size(name: string): Promise<number | null> {
    const listed = this.#listed.get(name);
    if (listed) return listed.size;
    return this.#inner.size(name);
  }

  modifiedAt(name: string): Promise<number | null> {
    return this.#inner.modifiedAt(name);
  }

  ensureHeld(): Promise<void> {
    return this.#inner.ensureHeld();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  async retainedUntil(name: string): Promise<number | null> {
    return (await this.#inner.retainedUntil?.(name)) ?? null;
  }
}
