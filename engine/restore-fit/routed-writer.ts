// A BlockWriter in the source disk's coordinates that sends each written byte range where the fitted layout
// puts it: a kept partition to the same place on the target, a moved one to its new place, a partition being
// shrunk to its staging file, and bytes no route claims (unallocated space past the new end, the source's
// backup GPT) nowhere. restorePoint writes through it unchanged.
import type { BlockWriter } from '../device/types.ts';

export interface Route {
  /** Source byte range [start, end). */
  start: number;
  end: number;
  /** Where those bytes go: `to` at `offset + (position - start)`. */
  to: BlockWriter;
  offset: number;
}

export function routedWriter(path: string, size: number, routes: Route[]): BlockWriter {
  const sorted = [...routes].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.start < sorted[i - 1]!.end)
      throw new Error(`overlapping routes at byte ${sorted[i]!.start}`);
  }
  const targets = [...new Set(sorted.map((route) => route.to))];
  return {
    path,
    size,
    logicalSectorSize: 512,
    async read(): Promise<Buffer> {
      throw new Error(`${path} is written through routes and cannot be read back`);
    },
    async write(offset: number, data: Buffer): Promise<void> {
      const end = offset + data.length;
      for (const route of sorted) {
        if (route.end <= offset) continue;
        if (route.start >= end) break;
        const from = Math.max(offset, route.start);
        const to = Math.min(end, route.end);
        await route.to.write(route.offset + (from - route.start), data.subarray(from - offset, to - offset));
      }
    },
    async flush(): Promise<void> {
      for (const target of targets) await target.flush();
    },
    // The routes' writers belong to the caller, who closes them.
    async close(): Promise<void> {},
  };
}
