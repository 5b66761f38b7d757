// Constants of the engine API that need no schema library: modules on a command's start-up path import them
// from here, so that running a backup does not load zod and build every schema first.

/** Largest message either side accepts; bigger input is refused before parsing. */
export const MAX_MESSAGE_BYTES = 1 << 20;

/** Block-map cell states: a cell shows the most urgent state among the units it covers. */
export const CellState = { free: 0, pending: 1, copied: 2, preserved: 3, writing: 4 } as const;
