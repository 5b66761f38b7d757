// Paths a caller names, opened once and then held: the engine walks the name one component at a time with
// openat2 (never following a link the kernel would resolve on its own), follows a symbolic link only when root
// or the caller owns it, and ends with an O_PATH descriptor whose fstat says what was found. All later work goes
// through that descriptor (`procPath`, which re-opens the same inode and never re-resolves the name), so a name
// swapped for a link, or a parent directory swapped, after the check changes nothing. New files are created
// O_EXCL|O_NOFOLLOW inside a held directory. Fails with HeldPathError (a message naming the path and why).
import { closeSync, fchownSync, fstatSync, lstatSync, readlinkSync, type Stats, unlinkSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { openat2, readlinkAt } from '../native/index.ts';

const AT_FDCWD = -100;
const O_RDWR = 0o2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_DIRECTORY = 0o200000;
const O_NOFOLLOW = 0o400000;
const O_PATH = 0o10000000;
const RESOLVE_NO_MAGICLINKS = 0x02;
const RESOLVE_NO_SYMLINKS = 0x04;
const RESOLVE_BENEATH = 0x08;
/** The kernel's own limit on links followed in one lookup. */
const MAX_LINKS = 40;

/** A caller-named path that cannot be held: the message says which and why. */
export class HeldPathError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.code = code;
  }
}

/** The names of the descriptors held now, by their magic link (procPath). */
const heldNames = new Map<string, string>();

/**
 * The name a held descriptor's magic link stands for (the one the caller gave, resolved when it was held), or
 * null when `path` is not one: for messages, and for checks that the name still leads to what was held.
 */
export function heldNameOf(path: string): string | null {
  return heldNames.get(path) ?? null;
}

/** An open descriptor for what a name pointed to when it was resolved. Close it when the work is done. */
export class HeldPath {
  /** The name as the caller gave it (absolute), for messages and records — never to be opened again. */
  readonly name: string;
  readonly fd: number;
  readonly stats: Stats;
  #closed = false;

  constructor(name: string, fd: number) {
    this.name = name;
    this.fd = fd;
    this.stats = fstatSync(fd);
    heldNames.set(this.procPath, name);
  }

  /**
   * A path that reaches the held inode itself (the kernel's magic link), also from child processes of this
   * one (mount, fsck): opening it re-opens what was checked, whatever the name points to now.
   */
  get procPath(): string {
    if (this.#closed) throw new Error(`engine bug: ${this.name} was used after its descriptor was closed`);
    return `/proc/${process.pid}/fd/${this.fd}`;
  }

  close(): void {
    if (this.#closed) return;
    heldNames.delete(this.procPath);
    this.#closed = true;
    closeSync(this.fd);
  }
}

function describeErrno(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'it does not exist';
  if (code === 'ENOTDIR') return 'a part of it is not a directory';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ELOOP') return 'it changed into a symbolic link while being opened';
  if (code === 'EXDEV') return 'it leads outside its directory';
  return (error as Error).message;
}

function openComponent(dirFd: number, component: string, name: string): number {
  try {
    return openat2(dirFd, component, O_PATH | O_NOFOLLOW, 0, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    throw new HeldPathError(`Cannot open ${name}: ${describeErrno(error)}.`, code);
  }
}

/**
 * Resolves `path` (made absolute) to an O_PATH descriptor. A symbolic link met on the way is followed only
 * when root or `trustedUid` owns it (a user can plant links only as itself): a root-run job never follows a
 * link a user planted, and a user's job follows the user's own links but still has its result checked.
 */
export function holdPath(path: string, trustedUid: number | null = null): HeldPath {
  const name = resolve(path);
  const pending = name.split('/');
  let dirFd = openat2(AT_FDCWD, '/', O_PATH | O_DIRECTORY, 0, 0);
  let links = 0;
  try {
    while (pending.length) {
      const component = pending.shift() as string;
      if (component === '' || component === '.') continue;
      const nextFd = openComponent(dirFd, component, name);
      let info: Stats;
      try {
        info = fstatSync(nextFd);
      } catch (error) {
        closeSync(nextFd);
        throw error;
      }
      if (info.isSymbolicLink()) {
        let target: string;
        try {
          if (info.uid !== 0 && info.uid !== trustedUid) {
            throw new HeldPathError(
              `Refusing ${name}: ${component} in it is a symbolic link owned by uid ${info.uid}; the engine follows only links of root${trustedUid === null || trustedUid === 0 ? '' : ' and of the caller'}. Name the real path.`,
              'ELOOP',
            );
          }
          if (++links > MAX_LINKS)
            throw new HeldPathError(`Cannot open ${name}: too many symbolic links.`, 'ELOOP');
          target = readlinkAt(nextFd);
        } finally {
          closeSync(nextFd);
        }
        pending.unshift(...target.split('/'));
        if (target.startsWith('/')) {
          closeSync(dirFd);
          dirFd = openat2(AT_FDCWD, '/', O_PATH | O_DIRECTORY, 0, 0);
        }
        continue;
      }
      closeSync(dirFd);
      dirFd = nextFd;
      if (!info.isDirectory() && pending.some((rest) => rest !== '' && rest !== '.')) {
        throw new HeldPathError(`Cannot open ${name}: ${component} in it is not a directory.`, 'ENOTDIR');
      }
    }
    const held = new HeldPath(name, dirFd);
    dirFd = -1;
    return held;
  } finally {
    if (dirFd >= 0) closeSync(dirFd);
  }
}

/** The entry `name` of the held directory `parent`, held itself; a symbolic link there is refused, not followed. */
export function holdChild(parent: HeldPath, name: string): HeldPath {
  const fullName = resolve(parent.name, name);
  if (name === '' || name === '.' || name === '..' || name.includes('/')) {
    throw new HeldPathError(`Cannot open ${fullName}: '${name}' is not a file name.`, 'EINVAL');
  }
  const fd = openComponent(parent.fd, name, fullName);
  const held = new HeldPath(fullName, fd);
  if (held.stats.isSymbolicLink()) {
    held.close();
    throw new HeldPathError(`Refusing ${fullName}: it is a symbolic link.`, 'ELOOP');
  }
  return held;
}

/** Like holdPath, but a path that does not exist gives null (any other failure still throws). */
export function holdPathIfPresent(path: string, trustedUid: number | null = null): HeldPath | null {
  try {
    return holdPath(path, trustedUid);
  } catch (error) {
    if (error instanceof HeldPathError && error.code === 'ENOENT') return null;
    throw error;
  }
}

/**
 * Creates a new file `name` (mode 0600, owned by `owner` when given) in the held directory `parent`, with
 * O_EXCL|O_NOFOLLOW: an entry already there — a file, a link planted a moment ago — makes it fail, never
 * followed. Returns the new file held.
 */
export function createInHeldDirectory(
  parent: HeldPath,
  name: string,
  owner: { uid: number; gid: number } | null,
): HeldPath {
  const fullName = resolve(parent.name, name);
  if (name === '' || name === '.' || name === '..' || name.includes('/')) {
    throw new HeldPathError(`Cannot create ${fullName}: '${name}' is not a file name.`, 'EINVAL');
  }
  let fd: number;
  try {
    fd = openat2(
      parent.fd,
      name,
      O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW,
      0o600,
      RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    );
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    const why = code === 'EEXIST' ? 'something appeared there meanwhile; ask again' : describeErrno(error);
    throw new HeldPathError(`Cannot create ${fullName}: ${why}.`, code);
  }
  try {
    if (owner) fchownSync(fd, owner.uid, owner.gid);
    return new HeldPath(fullName, fd);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/**
 * Removes `file`, made by createInHeldDirectory as `name` in `parent`, if it is still empty and `name` still
 * leads to it: a new target that a failed job never wrote to is not left behind.
 */
export function removeIfUnwritten(parent: HeldPath, name: string, file: HeldPath): void {
  if (fstatSync(file.fd).size !== 0) return;
  const entry = `${parent.procPath}/${name}`;
  try {
    const now = lstatSync(entry);
    if (now.dev === file.stats.dev && now.ino === file.stats.ino) unlinkSync(entry);
  } catch {
    // Gone or replaced meanwhile: nothing of ours to remove.
  }
}

/** The parent directory and final name of a path (made absolute), for creating it in a held directory. */
export function splitParent(path: string): { parent: string; name: string } {
  const absolute = resolve(path);
  return { parent: dirname(absolute), name: basename(absolute) };
}

/**
 * The directory that holds the held `file` now, itself held: found from the kernel's name for the descriptor
 * and accepted only when that directory's entry is still the very same inode.
 */
export function holdParentOf(file: HeldPath): HeldPath {
  const current = readlinkSync(file.procPath);
  if (!current.startsWith('/') || current.endsWith(' (deleted)')) {
    throw new HeldPathError(`${file.name} is no longer in any directory.`, 'ENOENT');
  }
  const parent = holdPath(dirname(current));
  try {
    const entry = openComponent(parent.fd, basename(current), current);
    const info = fstatSync(entry);
    closeSync(entry);
    if (info.dev !== file.stats.dev || info.ino !== file.stats.ino) {
      throw new HeldPathError(`${file.name} moved while it was being checked; ask again.`, 'EAGAIN');
    }
    return parent;
  } catch (error) {
    parent.close();
    throw error;
  }
}

/**
 * Whether the held directory `inner` lies inside the held directory `outer` (or is it): walks up from `inner`
 * through '..' descriptors comparing device and inode, so no name is resolved again.
 */
export function heldInside(inner: HeldPath, outer: HeldPath): boolean {
  const same = (a: Stats, b: Stats) => a.dev === b.dev && a.ino === b.ino;
  let fd = openat2(inner.fd, '.', O_PATH | O_DIRECTORY, 0, 0);
  try {
    for (;;) {
      const info = fstatSync(fd);
      if (same(info, outer.stats)) return true;
      const up = openat2(fd, '..', O_PATH | O_DIRECTORY, 0, 0);
      const upInfo = fstatSync(up);
      closeSync(fd);
      fd = up;
      // '..' of the root is the root itself.
      if (same(upInfo, info)) return false;
    }
  } finally {
    closeSync(fd);
  }
}
