// The tap as a snapshot provider: the disk is served through Diskline's FUSE file and loop device, so every
// write passes the session's interceptor; the point is the tap's consistent point (flush, freeze, arm, thaw:
// consistent-point.ts) and the copier reads the disk beneath the tap, the session holding what writers replace.
import { openReader } from '../device/open.ts';
import type { BlockReader } from '../device/types.ts';
import type { PointSession, PointTaken, SnapshotProvider } from '../snapshot/provider.ts';
import type { AttachedVolume } from './attach.ts';
import { type ConsistentPointReport, takeConsistentPoint } from './consistent-point.ts';

export class TapProvider implements SnapshotProvider {
  readonly kind = 'tap' as const;
  readonly interceptsWrites = true;
  readonly source: string;
  readonly reader: BlockReader;
  readonly volume: AttachedVolume;
  private readonly hooks: { preHook?: string; postHook?: string };
  private armedUnitSize = 0;
  /** The tap's own report of the last point (change tracking), for the backup's record. */
  lastPoint: ConsistentPointReport | null = null;

  private constructor(
    volume: AttachedVolume,
    reader: BlockReader,
    hooks: { preHook?: string; postHook?: string },
  ) {
    this.volume = volume;
    this.source = volume.source;
    this.reader = reader;
    this.hooks = hooks;
  }

  /** `readerPath`: the source as the engine held and checked it (the same file the tap serves). */
  static async open(
    volume: AttachedVolume,
    readerPath: string,
    hooks: { preHook?: string; postHook?: string } = {},
  ): Promise<TapProvider> {
    return new TapProvider(volume, await openReader(readerPath), hooks);
  }

  async takePoint(session: PointSession): Promise<PointTaken> {
    this.armedUnitSize = session.unitSize;
    this.lastPoint = await takeConsistentPoint(this.volume, session, this.hooks);
    const { consistency, frozenMountPoints, frozenMs, notes } = this.lastPoint;
    return { consistency, frozenMountPoints, frozenMs, notes };
  }

  settleUnits(firstUnit: number, count: number): void {
    this.volume.settleUnits(firstUnit, count);
  }

  store(): null {
    return null;
  }

  async release(): Promise<void> {
    if (this.armedUnitSize) await this.volume.setInterceptor(null, this.armedUnitSize).catch(() => {});
    await this.reader.close();
  }
}
