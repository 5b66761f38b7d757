// The journal of an instant restore: which units of the target already hold the point's bytes, kept on disk so
// a restore interrupted by a restart (crash, reboot, Ctrl-C) resumes instead of starting over. A unit is recorded
// only after its bytes are durable on the target, and the tap lets users at a unit only after it is recorded:
// so a resumed restore never writes the point over a unit a user may have changed since.
import { closeSync, constants, fdatasync, openSync, readSync, unlinkSync, write } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { defaultStateDir } from '../config/state.ts';

const writeAt = promisify(write);
const syncData = promisify(fdatasync);
const HEADER_BYTES = 4096;
const FORMAT = 1;

interface JournalHeader {
  format: number;
  point: string;
  target: string;
  size: number;
  unitSize: number;
}

/** Where the journal of a restore to `target` lives: beside an image, in the engine's state for a device. */
export function journalPathFor(target: string, isDevice: boolean): string {
  return isDevice
    ? join(defaultStateDir(), 'instant-restore', `${basename(target)}.journal`)
    : join(dirname(target), `.${basename(target)}.diskline-restore`);
}

function readHeader(fd: number): JournalHeader | null {
  const header = Buffer.alloc(HEADER_BYTES);
  if (readSync(fd, header, 0, HEADER_BYTES, 0) < HEADER_BYTES) return null;
  try {
    const parsed = JSON.parse(header.toString('utf8').replace(/\0+$/, '')) as JournalHeader;
    return parsed.format === FORMAT ? parsed : null;
  } catch {
    return null;
  }
}

/** True when `path` journals an unfinished restore of this very point to this target (so it can resume). */
export function journalResumes(path: string, header: Omit<JournalHeader, 'format'>): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch {
    return false;
  }
  try {
    const found = readHeader(fd);
    return (
      found !== null &&
      found.point === header.point &&
      found.target === header.target &&
      found.size === header.size &&
      found.unitSize === header.unitSize
    );
  } finally {
    closeSync(fd);
  }
}

export class RestoreJournal {
  readonly path: string;
  private readonly fd: number;
  private readonly targetFd: number;
  private pending: number[] = [];
  private committing: Promise<void> = Promise.resolve();
  private nextCommit: Promise<void> | null = null;

  private constructor(path: string, fd: number, targetFd: number) {
    this.path = path;
    this.fd = fd;
    this.targetFd = targetFd;
  }

  /**
   * Opens the journal of a restore of `header.point` to `header.target`. When it journals this same restore, the
   * units it records are returned as restored; otherwise it starts empty (nothing on the target is trusted).
   */
  static async open(
    path: string,
    header: Omit<JournalHeader, 'format'>,
    unitCount: number,
    targetFd: number,
  ): Promise<{ journal: RestoreJournal; restored: Uint8Array; resumed: boolean }> {
    await mkdir(dirname(path), { recursive: true });
    const resumed = journalResumes(path, header);
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600);
    const restored = new Uint8Array(unitCount);
    if (resumed) {
      readSync(fd, restored, 0, unitCount, HEADER_BYTES);
    } else {
      const head = Buffer.alloc(HEADER_BYTES);
      head.write(JSON.stringify({ format: FORMAT, ...header }));
      await writeAt(fd, head, 0, HEADER_BYTES, 0);
      await writeAt(fd, Buffer.alloc(unitCount), 0, unitCount, HEADER_BYTES);
      await syncData(fd);
    }
    return { journal: new RestoreJournal(path, fd, targetFd), restored, resumed };
  }

  /**
   * Resolves once `unit` is durably recorded as restored, its bytes made durable on the target first. Units
   * recorded close together share one pair of syncs.
   */
  record(unit: number): Promise<void> {
    this.pending.push(unit);
    if (!this.nextCommit) {
      this.nextCommit = this.committing.then(() => this.commit());
      this.committing = this.nextCommit;
    }
    return this.nextCommit;
  }

  /** Records every unit marked in `restored` at once (units whose bytes are already right, e.g. zeros of a new image). */
  async recordAll(restored: Uint8Array): Promise<void> {
    await writeAt(this.fd, restored, 0, restored.length, HEADER_BYTES);
    await syncData(this.fd);
  }

  private async commit(): Promise<void> {
    this.nextCommit = null;
    const units = this.pending;
    this.pending = [];
    await syncData(this.targetFd);
    for (const unit of units) await writeAt(this.fd, Buffer.of(1), 0, 1, HEADER_BYTES + unit);
    await syncData(this.fd);
  }

  /** Closes the journal; `finished` removes it (the target holds the whole point). */
  async close(finished: boolean): Promise<void> {
    await this.committing.catch(() => undefined);
    closeSync(this.fd);
    if (finished) unlinkSync(this.path);
  }
}
