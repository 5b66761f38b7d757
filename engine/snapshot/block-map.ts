// The block map the UI draws: the disk's units folded into N cells, each showing the most urgent state among
// its units (writing > preserved > pending > copied > free). A full map comes from a byte-at-a-time pass over
// the packed states; after that a watch keeps a dirty-cell set, so a refresh costs the cells that changed,
// not the disk (a 2 TB disk at 10+ Hz).

import { CellState } from '../../protocol/constants.ts';
import { COPIED, FREE, PENDING, PRESERVED, type UnitStates } from './unit-states.ts';

export interface BlockMapSource {
  readonly states: UnitStates;
  /** Units with a writer waiting on them right now. */
  readonly writingUnits: ReadonlyMap<number, number>;
}

// Urgency ranks and the cell state each stands for.
const RANK_WRITING = 4;
const rankOfUnitState = new Uint8Array(4);
rankOfUnitState[FREE] = 0;
rankOfUnitState[COPIED] = 1;
rankOfUnitState[PENDING] = 2;
rankOfUnitState[PRESERVED] = 3;
const cellStateOfRank = Uint8Array.of(
  CellState.free,
  CellState.copied,
  CellState.pending,
  CellState.preserved,
  CellState.writing,
);
/** Highest rank among the 4 units packed in a byte. */
const rankOfByte = new Uint8Array(256);
for (let byte = 0; byte < 256; byte++) {
  let rank = 0;
  for (let i = 0; i < 4; i++) rank = Math.max(rank, rankOfUnitState[(byte >>> (2 * i)) & 3]!);
  rankOfByte[byte] = rank;
}

export interface CellLayout {
  cellCount: number;
  unitsPerCell: number;
}

export function cellLayout(unitCount: number, cells: number): CellLayout {
  const unitsPerCell = Math.max(1, Math.ceil(unitCount / Math.max(1, cells)));
  return { unitsPerCell, cellCount: Math.ceil(unitCount / unitsPerCell) };
}

function cellRank(source: BlockMapSource, layout: CellLayout, cell: number): number {
  const first = cell * layout.unitsPerCell;
  const end = Math.min(source.states.unitCount, first + layout.unitsPerCell);
  let rank = 0;
  for (let unit = first; unit < end && rank < 3; unit++) {
    rank = Math.max(rank, rankOfUnitState[source.states.get(unit)]!);
  }
  if (source.writingUnits.size > 0) {
    for (let unit = first; unit < end; unit++) if (source.writingUnits.has(unit)) return RANK_WRITING;
  }
  return rank;
}

/** One state (CellState) per cell, computed from scratch. */
export function renderBlockMap(source: BlockMapSource, layout: CellLayout): Uint8Array {
  const { unitsPerCell, cellCount } = layout;
  const ranks = new Uint8Array(cellCount);
  const packed = source.states.packed;
  const unitCount = source.states.unitCount;
  if (unitsPerCell % 4 === 0) {
    // Whole bytes per cell; bytes past the last unit are zero (free), which never raises a rank.
    const bytesPerCell = unitsPerCell / 4;
    for (let cell = 0; cell < cellCount; cell++) {
      let rank = 0;
      const end = Math.min(packed.length, (cell + 1) * bytesPerCell);
      for (let index = cell * bytesPerCell; index < end && rank < 3; index++) {
        rank = Math.max(rank, rankOfByte[packed[index]!]!);
      }
      ranks[cell] = rank;
    }
  } else {
    for (let unit = 0; unit < unitCount; unit++) {
      const cell = Math.floor(unit / unitsPerCell);
      ranks[cell] = Math.max(ranks[cell]!, rankOfUnitState[source.states.get(unit)]!);
    }
  }
  for (const unit of source.writingUnits.keys()) ranks[Math.floor(unit / unitsPerCell)] = RANK_WRITING;
  for (let cell = 0; cell < cellCount; cell++) ranks[cell] = cellStateOfRank[ranks[cell]!]!;
  return ranks;
}

/** A subscriber's view: the full map once, then only the cells whose units changed since the last call. */
export class BlockMapWatch {
  readonly cellCount: number;
  readonly unitsPerCell: number;
  private readonly source: BlockMapSource;
  private readonly dirty: Uint8Array;
  private dirtyCells: number[] = [];
  private closed = false;
  private readonly onClose: (watch: BlockMapWatch) => void;

  constructor(source: BlockMapSource, cells: number, onClose: (watch: BlockMapWatch) => void) {
    this.source = source;
    const layout = cellLayout(source.states.unitCount, cells);
    this.cellCount = layout.cellCount;
    this.unitsPerCell = layout.unitsPerCell;
    this.dirty = new Uint8Array(Math.ceil(this.cellCount / 8));
    this.onClose = onClose;
  }

  /** Called by the session whenever a unit's state (or writing mark) changes. */
  unitChanged(unit: number): void {
    const cell = Math.floor(unit / this.unitsPerCell);
    const mask = 1 << (cell & 7);
    if (this.dirty[cell >>> 3]! & mask) return;
    this.dirty[cell >>> 3]! |= mask;
    this.dirtyCells.push(cell);
  }

  /** The whole map; clears the dirty set (the caller now has everything). */
  full(): Uint8Array {
    this.dirty.fill(0);
    this.dirtyCells = [];
    return renderBlockMap(this.source, this);
  }

  /** Changed cells since the last call as flat [cellIndex, state, cellIndex, state, ...]. */
  changes(): number[] {
    const cells = this.dirtyCells;
    this.dirtyCells = [];
    const out = new Array<number>(cells.length * 2);
    for (let i = 0; i < cells.length; i++) {
      const cell = cells[i]!;
      this.dirty[cell >>> 3]! &= ~(1 << (cell & 7));
      out[2 * i] = cell;
      out[2 * i + 1] = cellStateOfRank[cellRank(this.source, this, cell)]!;
    }
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose(this);
  }
}
