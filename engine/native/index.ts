// The native helper's TypeScript face: loads build/Release/diskline_native.node (built by `npm run build`)
// and types what it exports — aligned buffers for O_DIRECT, unix-socket peer credentials, file-system
// freeze/thaw, block device geometry, link-safe opening (openat2, readlinkat), the FUSE tap that engine/tap
// drives, and the repository's batch chunk codec (engine/repository/chunk-codec.ts).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** Credentials of the process at the other end of a connected unix socket. */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** What a FUSE thread waits on JavaScript for: a write (or, with reads intercepted, a read) touching armed units. */
export type TapAccessKind = 'write' | 'read';

/** Opaque handle of one running tap (a FUSE mount serving one file). */
export type TapHandle = { readonly __tap: unique symbol };

export interface TapOptions {
  /** Empty directory to mount the FUSE file system on. */
  mountDir: string;
  /** Name of the single file served (e.g. "volume"). */
  fileName: string;
  /** Size of the served file in bytes. */
  size: number;
  /** Backing file descriptor (device or image) for reads and writes; -1 when reads come from `onRead`. */
  backingFd: number;
  /** Serve read-only: writes fail with EROFS. */
  readOnly: boolean;
  /** Granularity of changed-block tracking in bytes (power of two). */
  trackUnitSize: number;
  /**
   * Called on the JS thread when a write touches a unit whose intercept bit is set (or a read does, with reads
   * intercepted). The FUSE thread waits until tapComplete(tap, token, errno); errno 0 settles the units.
   */
  onAccess: (kind: TapAccessKind, offset: number, length: number, token: number) => void;
  /** Required with backingFd -1: called for every read; answer with tapCompleteRead. */
  onRead?: (offset: number, length: number, token: number) => void;
}

export interface TapStats {
  reads: number;
  writes: number;
  /** Accesses that had to wait for JavaScript. */
  interceptedCalls: number;
  bytesRead: number;
  bytesWritten: number;
}

export interface NativeHelper {
  /** Zeroed memory starting at a multiple of `alignment` (default 4096), for O_DIRECT reads. */
  allocAligned(size: number, alignment?: number): ArrayBuffer;
  /** Bytes from the start of `view` to the next address that is a multiple of `alignment` (0: aligned). */
  alignmentGap(view: Uint8Array, alignment: number): number;
  /** HMAC-SHA256 under `idKey` of each chunk (back to back in `data`) into `ids`, 32 bytes each. */
  chunkIds(idKey: Uint8Array, data: Uint8Array, lengths: Uint32Array, ids: Uint8Array): void;
  /**
   * One group blob (header, member list, then the members' bytes as one zstd frame when smaller, sealed with
   * AES-256-GCM under `dataKey` unless null) of the chunks with `members[i]` set, into `out`. Returns its
   * length, 0 when no chunk is a member.
   */
  encodeGroup(
    dataKey: Uint8Array | null,
    level: number,
    data: Uint8Array,
    lengths: Uint32Array,
    ids: Uint8Array,
    members: Uint8Array,
    out: Uint8Array,
  ): number;
  /** A group blob opened, decompressed and checked into `out`: 0 when sound, else a ChunkDamage number. */
  decodeGroup(
    dataKey: Uint8Array | null,
    idKey: Uint8Array,
    checkIds: boolean,
    blob: Uint8Array,
    out: Uint8Array,
  ): number;
  peerCredentials(fd: number): PeerCredentials;
  /** FIFREEZE on the file system mounted at `mountpoint` (flushes it and blocks new writes). */
  freeze(mountpoint: string): void;
  /** FITHAW: undoes freeze. */
  thaw(mountpoint: string): void;
  /**
   * freeze/thaw on a worker thread. Use these while a tap in this process is armed: thawing writes the
   * superblock, which may need this process's event loop to answer the tap.
   */
  freezeAsync(mountpoint: string): Promise<void>;
  thawAsync(mountpoint: string): Promise<void>;
  blockDeviceSize(fd: number): number;
  blockDeviceSectorSize(fd: number): number;
  /** openat2(2): a new descriptor (close-on-exec) for `path` relative to `dirfd` (-100: the working directory). */
  openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number;
  /** The target of the symbolic link `fd` refers to (opened O_PATH|O_NOFOLLOW): the very link that was checked. */
  readlinkAt(fd: number): string;

  /** Mounts the FUSE file system and starts its threads. */
  tapStart(options: TapOptions): TapHandle;
  /**
   * Atomically with respect to every write: sets every intercept bit (unitSize) or disarms (null); with
   * resetChanged, returns the changed-block bitmap up to this instant and clears it.
   */
  tapArm(
    tap: TapHandle,
    unitSize: number | null,
    interceptReads: boolean,
    resetChanged: boolean,
  ): Buffer | null;
  /** Clears intercept bits [firstUnit, firstUnit + count): accesses there now pass without asking JS. */
  tapSettle(tap: TapHandle, firstUnit: number, count: number): void;
  /** Sets intercept bits [firstUnit, firstUnit + count). */
  tapMark(tap: TapHandle, firstUnit: number, count: number): void;
  /** Wakes the FUSE thread waiting on `token`; errno 0 lets the access proceed, otherwise it fails with errno. */
  tapComplete(tap: TapHandle, token: number, errno: number): void;
  /** Answers an onRead request with bytes (shorter: the rest is zero-filled) or an errno. */
  tapCompleteRead(tap: TapHandle, token: number, data: Uint8Array | null, errno: number): void;
  /** Copy of the changed-block bitmap (1 bit per track unit, LSB first); with reset, clears it atomically. */
  tapChanged(tap: TapHandle, reset: boolean): Buffer;
  tapStats(tap: TapHandle): TapStats;
  /** Fails pending JS requests with EIO, unmounts the FUSE file system (lazily) and joins its threads. */
  tapStop(tap: TapHandle): void;
}

const addonPath = fileURLToPath(new URL('./build/Release/diskline_native.node', import.meta.url));

let loaded: NativeHelper | null = null;

/** The native helper, or a clear error saying how to build it. */
export function nativeHelper(): NativeHelper {
  if (loaded) return loaded;
  if (!existsSync(addonPath)) {
    throw new Error(
      `the native helper is not built (${addonPath} is missing): run 'npm run build' ` +
        '(needs a C compiler, libfuse3-dev, libzstd-dev, OpenSSL headers and pkg-config; scripts/setup.sh installs them)',
    );
  }
  const require = createRequire(import.meta.url);
  try {
    loaded = require(addonPath) as NativeHelper;
  } catch (error) {
    throw new Error(
      `the native helper at ${addonPath} failed to load: ${(error as Error).message}; rebuild it with 'npm run build'`,
    );
  }
  return loaded;
}

/** True when the helper is built and loads; tests use it to skip with a reason. */
export function nativeHelperAvailable(): boolean {
  try {
    nativeHelper();
    return true;
  } catch {
    return false;
  }
}

export function allocAligned(size: number, alignment = 4096): ArrayBuffer {
  return nativeHelper().allocAligned(size, alignment);
}
/** Bytes from the start of `view` to the next `alignment`-aligned address; 0 without the native helper's say. */
export function alignmentGap(view: Uint8Array, alignment = 4096): number {
  return nativeHelperAvailable() ? nativeHelper().alignmentGap(view, alignment) : 0;
}
export function peerCredentials(fd: number): PeerCredentials {
  return nativeHelper().peerCredentials(fd);
}
export function freeze(mountpoint: string): void {
  nativeHelper().freeze(mountpoint);
}
export function thaw(mountpoint: string): void {
  nativeHelper().thaw(mountpoint);
}
export function freezeAsync(mountpoint: string): Promise<void> {
  return nativeHelper().freezeAsync(mountpoint);
}
export function thawAsync(mountpoint: string): Promise<void> {
  return nativeHelper().thawAsync(mountpoint);
}
export function blockDeviceSize(fd: number): number {
  return nativeHelper().blockDeviceSize(fd);
}
export function blockDeviceSectorSize(fd: number): number {
  return nativeHelper().blockDeviceSectorSize(fd);
}
export function openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number {
  return nativeHelper().openat2(dirfd, path, flags, mode, resolve);
}
export function readlinkAt(fd: number): string {
  return nativeHelper().readlinkAt(fd);
}
