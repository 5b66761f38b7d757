// The seam between jobs and the rest of the engine: the layout inspector, the snapshot session, the
// repository and the tap. Each part is loaded on first use, so the daemon starts (and answers what it
// can) even on a build where a part is missing; a job that needs a missing part fails saying which.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Drive, Partition } from '../../protocol/model.ts';

export class PartNotAvailableError extends Error {}

const engineDir = fileURLToPath(new URL('../', import.meta.url));

// biome-ignore lint/suspicious/noExplicitAny: the parts' modules are typed where they live; this seam only forwards.
type AnyModule = Record<string, any>;

/** Imports engine/<relativePath> if it exists; null when it does not. */
export async function loadPart(relativePath: string): Promise<AnyModule | null> {
  const file = `${engineDir}${relativePath}`;
  if (!existsSync(file)) return null;
  return (await import(file)) as AnyModule;
}

export async function requirePart(
  relativePath: string,
  exportName: string,
  what: string,
): Promise<AnyModule> {
  const part = await loadPart(relativePath);
  if (!part || !(exportName in part)) {
    throw new PartNotAvailableError(
      `${what}: not available yet (engine/${relativePath} has no ${exportName}).`,
    );
  }
  return part;
}

/** Partition table and partitions of a device or image, or null when the inspector is not available. */
export async function inspectPartitions(
  device: string,
): Promise<{ table: Drive['partitionTable']; partitions: Partition[] } | null> {
  const layout = await loadPart('layout/inspect.ts');
  if (!layout?.inspectDisk) return null;
  const disk = await layout.inspectDisk(device);
  return {
    table: disk.partitionTable ?? null,
    partitions: (disk.partitions ?? []).map(
      (partition: Partition & { typeName?: string }): Partition => ({
        index: partition.index,
        start: partition.start,
        size: partition.size,
        type: partition.typeName ?? partition.type,
        filesystem: partition.filesystem,
        blockSize: partition.blockSize,
        usedBytes: partition.usedBytes,
      }),
    ),
  };
}
