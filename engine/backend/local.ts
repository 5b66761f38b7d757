// A repository backend on a local directory. Every put goes through a temp name, fsync, rename and a
// directory fsync, so a file is visible under its final name only whole, even across a power cut. The
// directory is held open from open to close and every file is addressed through that descriptor, so a
// repository removed, moved or replaced meanwhile is never written at its old name (held-directory.ts). Every
// read opens a regular file only (no link followed, no FIFO or device opened), and files are the owner's alone
// unless the repository was made group-readable.
import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { type FileHandle, link, lstat, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { writeFully } from '../device/write-fully.ts';
import { HeldDirectory } from './held-directory.ts';
import { type Backend, UnsafeFileError } from './types.ts';

/** Writes parts in order with writev, in groups the kernel accepts, resuming after short writes. */
async function writeAllParts(handle: FileHandle, parts: readonly Buffer[]): Promise<void> {
  const GROUP = 512;
  for (let first = 0; first < parts.length; first += GROUP) {
    let group = parts.slice(first, first + GROUP);
    let remaining = group.reduce((sum, b) => sum + b.length, 0);
    while (remaining > 0) {
      const { bytesWritten } = await handle.writev(group);
      remaining -= bytesWritten;
      if (remaining === 0) break;
      // Short write: drop what was written and continue with the rest.
      let skip = bytesWritten;
      const rest: Buffer[] = [];
      for (const part of group) {
        if (skip >= part.length) skip -= part.length;
        else {
          rest.push(skip > 0 ? part.subarray(skip) : part);
          skip = 0;
        }
      }
      group = rest;
    }
  }
}

/** How many pack files stay open for ranged reads (restore reads many chunks from few packs). */
const OPEN_FILES = 32;
/**
 * Files this big are written around the page cache (O_DIRECT) when their memory is aligned for it: written
 * back through the cache they went at about half the disk's speed (measured: 350 against 650 MB/s), and a
 * backup writes each pack once and seldom reads it back soon.
 */
const DIRECT_WRITE_MIN = 1 << 20;
const DIRECT_ALIGN = 4096;

/**
 * How repository files are opened for reading: a symbolic link in the last step fails (ELOOP), a FIFO opens
 * without waiting for a writer (so its fstat can refuse it instead of a thread blocking), no terminal is taken.
 */
const OPEN_FOR_READ = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/** How temp files are made (a link planted at the name is not followed). */
const WRITE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;

/** What a file that is not regular is, in words. */
function typeOf(stats: Stats): string {
  if (stats.isSymbolicLink()) return 'a symbolic link';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isSocket()) return 'a socket';
  return 'of an unknown type';
}

export interface LocalBackendOptions {
  /** Files 0640 and folders 0750 instead of 0600 and 0700: members of the directory's group may read. */
  groupReadable?: boolean;
}

export class LocalBackend implements Backend {
  readonly location: string;
  readonly #held: HeldDirectory;
  readonly #openFiles = new Map<string, Promise<FileHandle>>();
  readonly #fileMode: number;
  readonly #folderMode: number;

  private constructor(held: HeldDirectory, options: LocalBackendOptions) {
    this.location = held.location;
    this.#held = held;
    this.#fileMode = options.groupReadable ? 0o640 : 0o600;
    this.#folderMode = options.groupReadable ? 0o750 : 0o700;
  }

  /** Opens and holds the directory `directory` (which must exist) until close. */
  static async open(directory: string, options: LocalBackendOptions = {}): Promise<LocalBackend> {
    return new LocalBackend(await HeldDirectory.open(resolve(directory)), options);
  }

  /** The file's path through the held directory: never resolved through the directory's name again. */
  #path(name: string): string {
    if (name.includes('..') || name.startsWith('/'))
      throw new Error(`invalid repository file name '${name}'`);
    return join(this.#held.path, name);
  }

  /** Runs one storage step; a failure caused by the repository vanishing, or a full disk, is reported as that. */
  async #step<T>(work: () => Promise<T>, name?: string): Promise<T> {
    try {
      return await work();
    } catch (error) {
      const gone = await this.#held.gone();
      if (gone) throw gone;
      const code = (error as NodeJS.ErrnoException).code;
      if (name && (code === 'ENOSPC' || code === 'EDQUOT')) {
        throw Object.assign(
          new Error(
            `the file system of repository ${this.location} is full (${code} writing ${name}); free space on it and run again`,
          ),
          { code },
        );
      }
      throw error;
    }
  }

  ensureHeld(): Promise<void> {
    return this.#held.ensureHeld();
  }

  /**
   * Opens a repository file for reading only when it is a regular file. The lstat first keeps a device node
   * from being opened at all (opening some has effects); the fstat after decides, on what was opened.
   */
  async #openRegular(name: string): Promise<{ handle: FileHandle; size: number }> {
    const path = this.#path(name);
    const named = await lstat(path);
    if (!named.isFile()) throw new UnsafeFileError(name, `is ${typeOf(named)}, not a regular file`);
    let handle: FileHandle;
    try {
      handle = await open(path, OPEN_FOR_READ);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ELOOP')
        throw new UnsafeFileError(name, 'is a symbolic link, not a regular file');
      throw error;
    }
    try {
      const opened = await handle.stat();
      if (!opened.isFile()) throw new UnsafeFileError(name, `is ${typeOf(opened)}, not a regular file`);
      return { handle, size: opened.size };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  get(name: string, maxBytes: number): Promise<Buffer> {
    return this.#step(async () => {
      const { handle, size } = await this.#openRegular(name);
      try {
        if (size > maxBytes)
          throw new UnsafeFileError(name, `holds ${size} bytes, more than such a file may (${maxBytes})`);
        // Only the bytes fstat counted: a file growing meanwhile cannot make the read go on.
        const buffer = Buffer.allocUnsafe(size);
        let done = 0;
        while (done < size) {
          const { bytesRead } = await handle.read(buffer, done, size - done, done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done === size ? buffer : buffer.subarray(0, done);
      } finally {
        await handle.close();
      }
    });
  }

  async #handle(name: string): Promise<FileHandle> {
    let handle = this.#openFiles.get(name);
    if (!handle) {
      if (this.#openFiles.size >= OPEN_FILES) {
        const [oldest, closing] = this.#openFiles.entries().next().value!;
        this.#openFiles.delete(oldest);
        closing.then((h) => h.close()).catch(() => undefined);
      }
      handle = this.#openRegular(name).then(({ handle }) => handle);
      this.#openFiles.set(name, handle);
      handle.catch(() => this.#openFiles.delete(name));
    }
    return handle;
  }

  getRange(name: string, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.#step(() => this.#getRange(name, offset, length, into));
  }

  async #getRange(name: string, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const handle = await this.#handle(name);
    const buffer = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(buffer, done, length - done, offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done === length ? buffer : buffer.subarray(0, done);
  }

  /**
   * Creates `name`'s folder when it is missing: one level only, inside the held directory, so a repository
   * removed meanwhile is never recreated (a removed directory takes no new entries).
   */
  async #ensureFolder(path: string): Promise<void> {
    await mkdir(dirname(path), { mode: this.#folderMode }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
  }

  /** Writes `data` durably to a new temp file; a failed write (a full disk) leaves no temp file behind. */
  async #writeTemp(data: Buffer | readonly Buffer[]): Promise<string> {
    const temp = this.#path(`tmp/${randomBytes(12).toString('hex')}`);
    await this.#ensureFolder(temp);
    try {
      if (Buffer.isBuffer(data) && data.length >= DIRECT_WRITE_MIN && (await this.#writeDirect(temp, data)))
        return temp;
      const handle = await open(temp, WRITE_NEW, this.#fileMode);
      try {
        if (Buffer.isBuffer(data)) await handle.writeFile(data);
        else await writeAllParts(handle, data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      return temp;
    } catch (error) {
      await rm(temp, { force: true }).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Writes `data` to a new file `temp` with O_DIRECT (the unaligned tail through the cache) and syncs it; false
   * when the file system or the buffer's memory does not allow direct writes (the caller then writes normally).
   */
  async #writeDirect(temp: string, data: Buffer): Promise<boolean> {
    const body = data.length - (data.length % DIRECT_ALIGN);
    let direct: FileHandle;
    try {
      direct = await open(temp, WRITE_NEW | constants.O_DIRECT, this.#fileMode);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EINVAL') return false;
      throw error;
    }
    let done: number;
    try {
      // A short direct write leaves an unaligned rest: it goes through the cache like the tail.
      done = await writeFully(direct, data.subarray(0, body), 0);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EINVAL') return false;
      throw error;
    } finally {
      await direct.close();
    }
    const handle = await open(temp, 'r+');
    try {
      if ((await writeFully(handle, data.subarray(done), done)) < data.length - done)
        throw new Error(`writing ${temp} stopped short at byte ${done}`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return true;
  }

  async #syncDir(dir: string): Promise<void> {
    const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  put(name: string, data: Buffer | readonly Buffer[]): Promise<void> {
    return this.#step(async () => {
      const path = this.#path(name);
      await this.#ensureFolder(path);
      const temp = await this.#writeTemp(data);
      // Rename after the data is durable, then sync the directory so the rename itself survives a crash.
      try {
        await rename(temp, path);
      } catch (error) {
        await rm(temp, { force: true }).catch(() => undefined);
        throw error;
      }
      this.#forget(name);
      await this.#syncDir(dirname(path));
    }, name);
  }

  create(name: string, data: Buffer): Promise<void> {
    return this.#step(async () => {
      const path = this.#path(name);
      await this.#ensureFolder(path);
      const temp = await this.#writeTemp(data);
      // link() fails with EEXIST when the name exists, and the file appears with its whole content at once.
      try {
        await link(temp, path);
      } finally {
        await rm(temp, { force: true });
      }
      await this.#syncDir(dirname(path));
    }, name);
  }

  #forget(name: string): void {
    const handle = this.#openFiles.get(name);
    if (handle) {
      this.#openFiles.delete(name);
      handle.then((h) => h.close()).catch(() => undefined);
    }
  }

  delete(name: string): Promise<void> {
    this.#forget(name);
    return this.#step(() => rm(this.#path(name), { force: true }));
  }

  list(prefix: string): Promise<string[]> {
    return this.#step(() => this.#list(prefix));
  }

  async #list(prefix: string): Promise<string[]> {
    const root = this.#path(prefix);
    const names: string[] = [];
    const walk = async (dir: string, relative: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true }).catch(
        async (error: NodeJS.ErrnoException) => {
          // A missing folder lists as empty, unless it is missing because the repository is.
          if (error.code === 'ENOENT' && !(await this.#held.gone())) return [];
          throw error;
        },
      );
      for (const entry of entries) {
        if (entry.isDirectory()) await walk(join(dir, entry.name), `${relative}${entry.name}/`);
        else names.push(`${relative}${entry.name}`);
      }
    };
    await walk(root, prefix.endsWith('/') || prefix === '' ? prefix : `${prefix}/`);
    return names;
  }

  async size(name: string): Promise<number | null> {
    return (await this.#stat(name))?.size ?? null;
  }

  async modifiedAt(name: string): Promise<number | null> {
    return (await this.#stat(name))?.mtimeMs ?? null;
  }

  #stat(name: string): Promise<Stats | null> {
    return this.#step(async () => {
      try {
        const stats = await lstat(this.#path(name));
        if (!stats.isFile()) throw new UnsafeFileError(name, `is ${typeOf(stats)}, not a regular file`);
        return stats;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !(await this.#held.gone())) return null;
        throw error;
      }
    });
  }

  async close(): Promise<void> {
    const handles = [...this.#openFiles.values()];
    this.#openFiles.clear();
    await Promise.all(handles.map((h) => h.then((f) => f.close()).catch(() => undefined)));
    await this.#held.close();
  }
}
