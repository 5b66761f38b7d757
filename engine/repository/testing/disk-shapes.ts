// Generated disks of the shapes real disks hold, for the shape property test and the shapes bench: all zero,
// one repeated unit, every unit distinct and incompressible, every unit distinct and extremely compressible
// (its index repeated as 8-byte words), and alternating runs of those. Content is a pure function of the seed,
// the unit size and the offset, so a disk of any size is made piece by piece (or served without a file).
import { createCipheriv, createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { BlockReader } from '../../device/types.ts';
import { seededRandom } from '../../testing/seeded-random.ts';
import { isAllZero } from '../chunk-codec.ts';

export const SHAPE_KINDS = [
  'zero',
  'repeated',
  'distinct-random',
  'distinct-compressible',
  'alternating',
] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

/** What fills one unit of an alternating disk (the other shapes fill every unit the same way). */
type UnitKind = Exclude<ShapeKind, 'alternating'>;
const RUN_KINDS: readonly UnitKind[] = ['zero', 'repeated', 'distinct-random', 'distinct-compressible'];

export interface DiskShape {
  kind: ShapeKind;
  seed: number;
  /** Bytes; need not be a multiple of the unit (a tail shorter than a unit). */
  size: number;
  /** The unit the content is made of: the repository's chunk size. */
  unitSize: number;
  /** Alternating disks: the longest run of one kind, in units. */
  maxRunUnits?: number;
}

/** Makes the bytes of a disk of one shape, unit by unit. */
export class ShapeGenerator {
  readonly shape: DiskShape;
  readonly unitCount: number;
  readonly #key: Buffer;
  readonly #repeated: Buffer;
  /** Alternating disks: where each run starts (ascending) and its kind. */
  readonly #runStarts: number[] = [];
  readonly #runKinds: UnitKind[] = [];

  constructor(shape: DiskShape) {
    this.shape = shape;
    this.unitCount = Math.ceil(shape.size / shape.unitSize);
    this.#key = createHash('sha256').update(`disk shape ${shape.seed}`).digest();
    this.#repeated = Buffer.alloc(shape.unitSize);
    this.#randomUnit(0xffffffff, this.#repeated);
    if (shape.kind === 'alternating') {
      const random = seededRandom(shape.seed);
      const maxRun = Math.max(1, shape.maxRunUnits ?? 8);
      for (let unit = 0; unit < this.unitCount; unit += 1 + Math.floor(random() * maxRun)) {
        this.#runStarts.push(unit);
        this.#runKinds.push(RUN_KINDS[Math.floor(random() * RUN_KINDS.length)]!);
      }
    }
  }

  /** The kind of content of one unit. */
  unitKind(unit: number): UnitKind {
    if (this.shape.kind !== 'alternating') return this.shape.kind;
    let low = 0;
    let high = this.#runStarts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >>> 1;
      if (this.#runStarts[middle]! <= unit) low = middle;
      else high = middle - 1;
    }
    return this.#runKinds[low]!;
  }

  /** Fills `out` (one unit's size) with the content of `unit`; the caller cuts the tail. */
  fillUnit(unit: number, out: Buffer): void {
    switch (this.unitKind(unit)) {
      case 'zero':
        out.fill(0);
        return;
      case 'repeated':
        this.#repeated.copy(out);
        return;
      case 'distinct-random':
        this.#randomUnit(unit, out);
        return;
      case 'distinct-compressible':
        // The unit's own index repeated as 8-byte words (seed in the high half, so seeds do not share units).
        out.writeBigUInt64LE((BigInt(this.shape.seed >>> 0) << 32n) | BigInt(unit), 0);
        for (let filled = 8; filled < out.length; filled *= 2) out.copyWithin(filled, 0, filled);
        return;
    }
  }

  /** The disk's bytes in [offset, offset + out.length) into `out`. */
  read(offset: number, out: Buffer): void {
    const { unitSize } = this.shape;
    const scratch = Buffer.allocUnsafe(unitSize);
    let at = 0;
    while (at < out.length) {
      const position = offset + at;
      const unit = Math.floor(position / unitSize);
      const within = position - unit * unitSize;
      const take = Math.min(unitSize - within, out.length - at);
      this.fillUnit(unit, scratch);
      scratch.copy(out, at, within, within + take);
      at += take;
    }
  }

  /** The whole disk in memory (small disks only). */
  bytes(): Buffer {
    const out = Buffer.alloc(this.shape.size);
    this.read(0, out);
    return out;
  }

  /** Writes the disk as an image file, 8 MiB at a time; zero runs are left as holes. */
  async writeImage(path: string): Promise<string> {
    const handle = await open(path, 'w');
    try {
      const piece = Buffer.alloc(Math.max(this.shape.unitSize, 8 << 20));
      for (let offset = 0; offset < this.shape.size; offset += piece.length) {
        const length = Math.min(piece.length, this.shape.size - offset);
        this.read(offset, piece.subarray(0, length));
        if (!isAllZero(piece.subarray(0, length))) await handle.write(piece, 0, length, offset);
      }
      await handle.truncate(this.shape.size);
    } finally {
      await handle.close();
    }
    return path;
  }

  /**
   * A reader serving the disk without storing it, under the path of a sparse file of the disk's size (so a
   * backup of a disk of many gigabytes needs no disk space for its source).
   */
  reader(path: string): BlockReader {
    return {
      path,
      size: this.shape.size,
      logicalSectorSize: 512,
      read: async (offset, length) => {
        const out = Buffer.alloc(Math.max(0, Math.min(length, this.shape.size - offset)));
        this.read(offset, out);
        return out;
      },
      readInto: async (target, offset) => {
        const length = Math.max(0, Math.min(target.length, this.shape.size - offset));
        this.read(offset, target.subarray(0, length));
        return length;
      },
      close: async () => {},
    };
  }

  #randomUnit(unit: number, out: Buffer): void {
    const iv = Buffer.alloc(16);
    iv.writeUInt32BE(unit >>> 0, 0);
    const cipher = createCipheriv('aes-256-ctr', this.#key, iv);
    out.fill(0);
    const stream = cipher.update(out);
    stream.copy(out);
  }
}
