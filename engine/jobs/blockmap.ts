// Turns a backup's per-unit states into the block map the UI draws: a fixed number of cells, each showing
// the most urgent state among the units it covers (writing > preserved > pending > copied > free), sent as
// one full map and then only the cells that changed, at most 10 times a second.
import { CellState } from '../../protocol/messages.ts';

/** Per-unit states packed 2 bits per unit, as engine/snapshot/unit-states.ts keeps them. */
export interface UnitStateSource {
  readonly unitCount: number;
  /** Unit i at bits 2*(i%4) of byte i>>2: 0 free, 1 pending, 2 preserved, 3 copied. */
  readonly packed: Uint8Array;
}

/** Snapshot unit code (free, pending, preserved, copied) → block-map cell state. */
const CELL_OF_UNIT = [CellState.free, CellState.pending, CellState.preserved, CellState.copied];
/** Cell state → urgency; the cell shows its most urgent unit. */
const URGENCY = new Map<number, number>([
  [CellState.free, 0],
  [CellState.copied, 1],
  [CellState.pending, 2],
  [CellState.preserved, 3],
  [CellState.writing, 4],
]);

function mostUrgent(a: number, b: number): number {
  return URGENCY.get(a)! >= URGENCY.get(b)! ? a : b;
}

/** For each packed byte (4 units): the most urgent cell state among them. */
const BYTE_CELL = new Uint8Array(256).map((_, byte) => {
  let cell: number = CellState.free;
  for (let shift = 0; shift < 8; shift += 2) cell = mostUrgent(cell, CELL_OF_UNIT[(byte >>> shift) & 3]!);
  return cell;
});

export class BlockMapView {
  readonly cellCount: number;
  readonly unitsPerCell: number;
  #source: UnitStateSource;
  #last: Uint8Array | null = null;

  constructor(source: UnitStateSource, requestedCells: number) {
    this.#source = source;
    const unitCount = Math.max(1, source.unitCount);
    let unitsPerCell = Math.max(1, Math.ceil(unitCount / requestedCells));
    // Whole packed bytes per cell let a cell be read a byte (4 units) at a time.
    if (unitsPerCell > 4) unitsPerCell = Math.ceil(unitsPerCell / 4) * 4;
    this.unitsPerCell = unitsPerCell;
    this.cellCount = Math.ceil(unitCount / unitsPerCell);
  }

  /** The current state of every cell. */
  cells(): Uint8Array {
    const { packed, unitCount } = this.#source;
    const cells = new Uint8Array(this.cellCount);
    const per = this.unitsPerCell;
    for (let cell = 0; cell < this.cellCount; cell++) {
      let state: number = CellState.free;
      const first = cell * per;
      const end = Math.min(unitCount, first + per);
      if (per % 4 === 0) {
        for (let byte = first >>> 2; byte < (end + 3) >>> 2; byte++)
          state = mostUrgent(state, BYTE_CELL[packed[byte]!]!);
      } else {
        for (let unit = first; unit < end; unit++) {
          state = mostUrgent(state, CELL_OF_UNIT[(packed[unit >>> 2]! >>> ((unit & 3) << 1)) & 3]!);
        }
      }
      cells[cell] = state;
    }
    return cells;
  }

  /** The full map (base64 of one byte per cell); later `changes()` are relative to it. */
  full(): string {
    this.#last = this.cells();
    return Buffer.from(this.#last).toString('base64');
  }

  /** Changed cells since the last call as [cellIndex, state, …]; empty when nothing changed. */
  changes(): number[] {
    const now = this.cells();
    const before = this.#last;
    this.#last = now;
    if (!before) return Array.from(now.entries()).flat();
    const changed: number[] = [];
    for (let cell = 0; cell < now.length; cell++)
      if (now[cell] !== before[cell]) changed.push(cell, now[cell]!);
    return changed;
  }
}
