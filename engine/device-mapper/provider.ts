// The device-mapper snapshot provider: for a disk that is already a mapped device (an LVM logical volume, a
// LUKS mapping, or a partition under the linear target Diskline's boot hook stacks), the point is a table
// swap — the way LVM takes a snapshot:
//   NAME-dlreal  = a new device with NAME's own table (the same blocks)
//   NAME-dlpoint = snapshot of NAME-dlreal, old chunks kept in the store
//   load NAME = snapshot-origin NAME-dlreal (inactive, while NAME runs)
//   resume NAME: the kernel suspends (in-flight writes finish, a file system on it freezes: the point),
//                swaps the tables and resumes, in one ioctl
// From then on the kernel copies each chunk's old bytes to the store before its first write, and the copier
// reads NAME-dlpoint. The store's fill is watched; past the high watermark the disk's writers are slowed with
// io.max, near capacity they are held (write-limit.ts), so dm-snapshot never overflows and drops the point. A
// watchdog undoes the swap, the limits and the devices if the engine dies; release() does so when the copy ends.
import { execFile } from 'node:child_process';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { promisify } from 'node:util';
import type { Clock } from '../../protocol/clock.ts';
import { systemClock } from '../../protocol/clock.ts';
import type { ContainerSpec } from '../../protocol/model.ts';
import { openReader } from '../device/open.ts';
import { sysfsSize } from '../device/sysfs.ts';
import type { BlockReader } from '../device/types.ts';
import type {
  CopyProgress,
  PointSession,
  PointTaken,
  ProviderStore,
  SnapshotProvider,
} from '../snapshot/provider.ts';
import { type CowStore, deviceNumberOf, openCowStore } from './cow-store.ts';
import {
  createDevice,
  DeviceMapperError,
  deviceExists,
  deviceNumber,
  dmNameOf,
  loadTable,
  parseSnapshotStatus,
  removeDevice,
  statusOf,
  swapInLoadedTable,
  tableOf,
} from './dmsetup.ts';
import { WriterLimit } from './io-limit.ts';
import { Watchdog } from './watchdog.ts';
import { writeLimitFor } from './write-limit.ts';

/** dm-snapshot's chunk: 8 sectors (4 KiB), so a 4 KiB write costs the store 4 KiB, not a large chunk. */
const CHUNK_SECTORS = 8;
/** Readings of the store whose spacing sets how long a limit may stand unchecked. */
const RECENT_PERIODS = 8;
/** Until two readings show how fast the watcher reacts, it is taken to need this long. */
const FIRST_REACTION_SECONDS = 2;

export interface DeviceMapperProviderOptions {
  /** Where the snapshot keeps old chunks: memory, a preallocated file, a spare partition. */
  store: ContainerSpec;
  clock?: Clock;
  /** How often the store's fill is read (default 100 ms). */
  fillIntervalMs?: number;
  /** Fraction of the store past which writers are slowed (default 0.5). */
  highWatermark?: number;
  /** Run before the suspend / after the resume (the same contract as the tap's hooks). */
  preHook?: string;
  postHook?: string;
}

/** A reader that reads the live disk until the point and the snapshot device after it. */
class PointReader implements BlockReader {
  readonly path: string;
  readonly size: number;
  readonly logicalSectorSize: number;
  current: BlockReader;
  constructor(live: BlockReader) {
    this.current = live;
    this.path = live.path;
    this.size = live.size;
    this.logicalSectorSize = live.logicalSectorSize;
  }
  read(offset: number, length: number): Promise<Buffer> {
    return this.current.read(offset, length);
  }
  readInto(target: Buffer, offset: number): Promise<number> {
    const reader = this.current;
    if (reader.readInto) return reader.readInto(target, offset);
    return reader.read(offset, target.length).then((data) => data.copy(target));
  }
  allocateReadBuffer(size: number): Buffer {
    return this.current.allocateReadBuffer?.(size) ?? Buffer.alloc(size);
  }
  close(): Promise<void> {
    return this.current.close();
  }
}

/** Mount points of the device with number "major:minor". */
async function mountPointsOfNumber(number: string): Promise<string[]> {
  const points: string[] = [];
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const fields = line.split(' ');
    if (fields[2] === number && fields[4]) points.push(fields[4].replace(/\\040/g, ' '));
  }
  return points;
}

/**
 * The kernel's name of the block device at `path`, by its device number: /dev/mapper nodes made without udev
 * are device nodes, not links to dm-N, so the name cannot be read off the path.
 */
export async function blockKernelName(path: string): Promise<string> {
  const info = await stat(path).catch(() => null);
  if (!info?.isBlockDevice()) throw new DeviceMapperError(`${path} is not there: no such disk`);
  const number = deviceNumberOf(info.rdev);
  return basename(await realpath(`/sys/dev/block/${number}`));
}

/** The mapped device beneath a path, or an error saying why the device-mapper provider cannot take it. */
export async function mappedDeviceOf(source: string): Promise<{ name: string; kernel: string }> {
  const kernel = await blockKernelName(source);
  const name = await dmNameOf(kernel);
  if (!name)
    throw new DeviceMapperError(
      `${source} is not a device-mapper device: protect it (\`diskline protect ${source}\`) and restart, or attach it through the tap`,
    );
  return { name, kernel };
}

export class DeviceMapperProvider implements SnapshotProvider {
  readonly kind = 'device-mapper' as const;
  readonly interceptsWrites = false;
  readonly source: string;
  readonly reader: PointReader;
  private readonly name: string;
  private readonly table: string;
  private readonly sectors: number;
  private readonly originNumber: string;
  private readonly options: DeviceMapperProviderOptions;
  private readonly clock: Clock;
  private readonly watchdog: Watchdog;
  private readonly cowStore: CowStore;
  private readonly limit: WriterLimit;
  private readonly realName: string;
  private readonly pointName: string;
  private swapped = false;
  private madeReal = false;
  private madePoint = false;
  private fill: ProviderStore | null = null;
  private watching: AbortController | null = null;
  private invalidReason: string | null = null;
  private released = false;

  private constructor(init: {
    source: string;
    name: string;
    table: string;
    sectors: number;
    originNumber: string;
    live: BlockReader;
    options: DeviceMapperProviderOptions;
    watchdog: Watchdog;
    cowStore: CowStore;
    limit: WriterLimit;
  }) {
    this.source = init.source;
    this.name = init.name;
    this.table = init.table;
    this.sectors = init.sectors;
    this.originNumber = init.originNumber;
    this.reader = new PointReader(init.live);
    this.options = init.options;
    this.clock = init.options.clock ?? systemClock;
    this.watchdog = init.watchdog;
    this.cowStore = init.cowStore;
    this.limit = init.limit;
    this.realName = `${init.name}-dlreal`;
    this.pointName = `${init.name}-dlpoint`;
  }

  /** Prepares a snapshot of the mapped device `source`: the guard, the store and the writers' limit; nothing is swapped yet. */
  static async open(source: string, options: DeviceMapperProviderOptions): Promise<DeviceMapperProvider> {
    const { name, kernel } = await mappedDeviceOf(source);
    const table = await tableOf(name);
    if (/\bsnapshot-origin\b|\bsnapshot\b/.test(table))
      throw new DeviceMapperError(
        `${source} (${name}) already has a snapshot in its table: another backup runs, or one was left behind (dmsetup table ${name})`,
      );
    for (const suffix of ['-dlreal', '-dlpoint'])
      if (await deviceExists(`${name}${suffix}`))
        throw new DeviceMapperError(
          `${name}${suffix} exists: a backup of ${source} runs or was left behind; remove it (dmsetup remove ${name}${suffix}) once none runs`,
        );
    const size = await sysfsSize(kernel);
    if (!size) throw new DeviceMapperError(`cannot read the size of ${source}`);
    const originNumber = await deviceNumber(kernel);
    const lower = await lowerDeviceNumbers(kernel);
    const watchdog = Watchdog.start();
    let cowStore: CowStore | null = null;
    try {
      cowStore = await openCowStore(options.store, {
        protectedDeviceNumbers: [originNumber, ...lower],
        watchdog,
      });
      const limit = await WriterLimit.forDevice(originNumber, watchdog);
      const live = await openReader(`/dev/mapper/${name}`);
      return new DeviceMapperProvider({
        source,
        name,
        table,
        sectors: size / 512,
        originNumber,
        live,
        options,
        watchdog,
        cowStore,
        limit,
      });
    } catch (error) {
      await cowStore?.release();
      watchdog.forget();
      await watchdog.close();
      throw error;
    }
  }

  async takePoint(session: PointSession): Promise<PointTaken> {
    const mountPoints = await mountPointsOfNumber(this.originNumber);
    const notes: string[] = [];
    const env = { ...process.env, DISKLINE_SOURCE: this.source, DISKLINE_DEVICE: `/dev/mapper/${this.name}` };
    if (this.options.preHook) await runHook(this.options.preHook, env);
    let suspendedMs = 0;
    try {
      // Each step is handed to the guard before it is taken: a death between any two is undone.
      this.watchdog.guardDevice(this.realName);
      await createDevice(this.realName, this.table);
      this.madeReal = true;
      this.watchdog.guardDevice(this.pointName);
      // The snapshot may exist before the swap: until NAME is suspended its writes reach the blocks directly,
      // and the snapshot reads them there; from the suspend on, they go through snapshot-origin and are kept.
      await createDevice(
        this.pointName,
        `0 ${this.sectors} snapshot /dev/mapper/${this.realName} ${this.cowStore.device} N ${CHUNK_SECTORS}`,
      );
      this.madePoint = true;
      this.watchdog.guardTable(this.name, this.table);
      await loadTable(this.name, `0 ${this.sectors} snapshot-origin /dev/mapper/${this.realName}`);
      // From the swap on, writes fill the store; the watcher's first reading may be seconds away on a busy
      // machine, so writers start under the limit an empty store can stand for that long.
      await this.limit.apply(
        writeLimitFor({
          usedBytes: 0,
          capacityBytes: this.cowStore.capacityBytes,
          remainingCopyBytes: this.sectors * 512,
          copyBytesPerSecond: 0,
          reactionSeconds: FIRST_REACTION_SECONDS,
          ...(this.options.highWatermark ? { highWatermark: this.options.highWatermark } : {}),
        }),
      );
      this.swapped = true;
      // Unlike the tap, arming is bookkeeping only here: the kernel keeps the old chunks from the suspend on.
      session.arm();
      suspendedMs = await swapInLoadedTable(this.name);
    } catch (error) {
      await this.undoSwap().catch(() => undefined);
      if (this.options.postHook) await runHook(this.options.postHook, env).catch(() => undefined);
      throw new DeviceMapperError(
        `could not take a consistent point of ${this.source}: ${(error as Error).message}`,
      );
    }
    if (this.options.postHook) await runHook(this.options.postHook, env);
    const snapshotDevice = await openReader(`/dev/mapper/${this.pointName}`);
    const live = this.reader.current;
    this.reader.current = snapshotDevice;
    await live.close();
    if (!mountPoints.length)
      notes.push(`nothing on ${this.source} is mounted: the point is crash-consistent`);
    return {
      consistency: mountPoints.length ? 'frozen' : 'crash-consistent',
      frozenMountPoints: mountPoints,
      frozenMs: mountPoints.length ? suspendedMs : 0,
      notes,
    };
  }

  /**
   * Watches the store until the copy ends: fill → the writers' limit. Rejects when the kernel dropped the
   * snapshot (it must not happen; if it does, the backup fails, never presents a damaged point).
   */
  async watch(progress: CopyProgress, signal: AbortSignal): Promise<void> {
    const interval = this.options.fillIntervalMs ?? 100;
    // The time between readings, as seen lately: how long a limit stands before the next can change it.
    const periods: number[] = [];
    let lastReading: number | null = null;
    while (!signal.aborted) {
      const readingAt = this.clock.now();
      if (lastReading !== null) periods.push((readingAt - lastReading) / 1000);
      if (periods.length > RECENT_PERIODS) periods.shift();
      lastReading = readingAt;
      const fill = parseSnapshotStatus(await statusOf(this.pointName));
      if (fill.invalid) {
        this.invalidReason = `the snapshot of ${this.source} was dropped by the kernel (its store ${this.cowStore.description} overflowed or failed)`;
        throw new DeviceMapperError(this.invalidReason);
      }
      const capacityBytes = fill.totalSectors * 512;
      const usedBytes = fill.usedSectors * 512;
      const limit = writeLimitFor({
        usedBytes,
        capacityBytes,
        remainingCopyBytes: progress.remainingBytes(),
        copyBytesPerSecond: progress.bytesPerSecond(),
        // Twice the longest recent period: a busy machine's next reading may come later still.
        reactionSeconds: periods.length ? 2 * Math.max(...periods) : FIRST_REACTION_SECONDS,
        ...(this.options.highWatermark ? { highWatermark: this.options.highWatermark } : {}),
      });
      await this.limit.apply(limit);
      this.fill = {
        usedBytes,
        capacityBytes,
        pressure: limit.state === 'normal' ? 'normal' : limit.state === 'held' ? 'suspended' : 'throttled',
      };
      await this.clock.sleep(interval, signal).catch(() => undefined);
    }
  }

  store(): ProviderStore | null {
    return this.fill;
  }

  /** Why the snapshot can no longer be trusted, or null. */
  get invalid(): string | null {
    return this.invalidReason;
  }

  private async undoSwap(): Promise<void> {
    if (this.swapped) {
      // Loaded while live, swapped in one short suspend; a failed swap may have left the device suspended or
      // the snapshot-origin table loaded but not live: this undoes either.
      await loadTable(this.name, this.table);
      await swapInLoadedTable(this.name);
      this.swapped = false;
    }
    if (this.madePoint) {
      await removeDevice(this.pointName);
      this.madePoint = false;
    }
    if (this.madeReal) {
      await removeDevice(this.realName);
      this.madeReal = false;
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    this.watching?.abort();
    await this.reader.close().catch(() => undefined);
    await this.limit.lift();
    await this.undoSwap();
    await this.cowStore.release();
    this.watchdog.forget();
    await this.watchdog.close();
  }

  /** The guard's process id (tests kill the engine and look for it doing its work). */
  get watchdogPid(): number | undefined {
    return this.watchdog.pid;
  }

  get storeDescription(): string {
    return this.cowStore.description;
  }

  get mappedName(): string {
    return this.name;
  }
}

/** "major:minor" of every device beneath a mapped device (its slaves, recursively): a store may be none of them. */
async function lowerDeviceNumbers(kernel: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (name: string) => {
    const slaves = await readdir(`/sys/class/block/${name}/slaves`).catch(() => [] as string[]);
    for (const slave of slaves) {
      found.push(await deviceNumber(slave));
      // A partition's disk holds it too: a store on another partition of the same disk is fine, the disk is not.
      const disk = basename(await realpath(`/sys/class/block/${slave}/..`).catch(() => ''));
      if (disk && disk !== 'block') found.push(await deviceNumber(disk).catch(() => ''));
      await visit(slave);
    }
  };
  await visit(kernel);
  return found.filter(Boolean);
}

async function runHook(command: string, env: NodeJS.ProcessEnv): Promise<void> {
  try {
    await promisify(execFile)('/bin/sh', ['-c', command], { env, timeout: 60_000 });
  } catch (error) {
    const detail = ((error as { stderr?: string }).stderr ?? '').trim() || (error as Error).message;
    throw new DeviceMapperError(`the hook failed (${command}): ${detail}`);
  }
}
