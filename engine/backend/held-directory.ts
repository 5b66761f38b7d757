// A repository directory held open from open to close. Files are addressed through the descriptor
// (/proc/self/fd/N/…), never through the directory's name again, so a repository removed, moved or replaced by
// another while a job runs is never written at its old name, and the job can say which of those happened.
import { constants } from 'node:fs';
import { type FileHandle, open, readlink, stat } from 'node:fs/promises';
import { heldNameOf } from '../handles/held-path.ts';

/** Linux's O_PATH, which Node's constants do not list. */
const O_PATH = 0o10000000;

/** /proc/PID/fd/N (or /proc/self/fd/N): a path that reaches a held descriptor's file, whatever its name now. */
const DESCRIPTOR_LINK = /^\/proc\/(self|\d+)\/fd\/\d+$/;

/**
 * The name a path stands for: itself, or for a held descriptor's link the name it was held by (else where the
 * link leads now).
 */
export async function nameBehind(path: string): Promise<string> {
  if (!DESCRIPTOR_LINK.test(path)) return path;
  return heldNameOf(path) ?? (await readlink(path).catch(() => path));
}

export type GoneHow = 'removed' | 'moved' | 'replaced';

/** The repository a job opened is no longer the one its name leads to. */
export class RepositoryGoneError extends Error {
  readonly how: GoneHow;
  constructor(how: GoneHow, message: string) {
    super(message);
    this.how = how;
  }
}

export class HeldDirectory {
  /** The name the directory was opened by (absolute). */
  readonly location: string;
  /** The directory through its descriptor: prefix of every file name. */
  readonly path: string;
  readonly #handle: FileHandle;
  readonly #dev: number;
  readonly #ino: number;

  private constructor(location: string, handle: FileHandle, dev: number, ino: number) {
    this.location = location;
    this.#handle = handle;
    this.path = `/proc/self/fd/${handle.fd}`;
    this.#dev = dev;
    this.#ino = ino;
  }

  static async open(location: string): Promise<HeldDirectory> {
    // O_PATH: the descriptor only names the directory, so holding it needs no read permission on it.
    const handle = await open(location, O_PATH | constants.O_DIRECTORY);
    const info = await handle.stat();
    // A directory the engine already holds comes as its descriptor's magic link, which always leads to it: the
    // name to watch is the one the caller gave when it was held.
    const name = await nameBehind(location);
    return new HeldDirectory(name, handle, info.dev, info.ino);
  }

  /** Why the directory is no longer what its name leads to, or null while it still is. */
  async gone(): Promise<RepositoryGoneError | null> {
    const held = await this.#handle.stat();
    if (held.nlink === 0) {
      return new RepositoryGoneError(
        'removed',
        `repository ${this.location} was removed while in use; nothing was written in its place`,
      );
    }
    const now = await stat(this.location).catch(() => null);
    if (now && now.dev === this.#dev && now.ino === this.#ino) return null;
    const movedTo = await readlink(this.path).catch(() => null);
    const where = movedTo ? `the repository that was opened is now at ${movedTo}` : 'it cannot be found';
    if (!now) {
      return new RepositoryGoneError(
        'moved',
        `repository ${this.location} was moved while in use (${where}); nothing was written at its old name — run again with its new place`,
      );
    }
    const other = await stat(`${this.location}/config`).then(
      () => 'another repository',
      () => 'another directory',
    );
    return new RepositoryGoneError(
      'replaced',
      `repository ${this.location} was replaced by ${other} while in use (${where}); nothing was written to the one now at ${this.location}`,
    );
  }

  /** Fails with what happened when the directory was removed, moved or replaced. */
  async ensureHeld(): Promise<void> {
    const gone = await this.gone();
    if (gone) throw gone;
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}
