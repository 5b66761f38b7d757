// Sparse disk images for tests: a temp dir that is always removed, an image of a given size,
// and a partition table written by sfdisk (util-linux), so the layout is made by a real partitioner.
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTool } from './tools.ts';

export const MiB = 1024 * 1024;

/** Runs `body` with a fresh directory under the OS temp dir and removes it afterwards, even on failure. */
export async function withTempDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-test-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Creates (or truncates) a sparse image file of `size` bytes, all zeros, taking no disk space yet. */
export async function makeSparseImage(path: string, size: number): Promise<string> {
  const handle = await open(path, 'w');
  try {
    await handle.truncate(size);
  } finally {
    await handle.close();
  }
  return path;
}

/** One partition for sfdisk: size in bytes (omit for "the rest"), type as sfdisk takes it (e.g. 'L', '0c', a GUID). */
export interface PartitionSpec {
  size?: number;
  type?: string;
  /** Start in bytes; omitted: sfdisk's default (1 MiB-aligned, right after the previous one). */
  start?: number;
}

/**
 * Writes a partition table with sfdisk. For 'dos', an entry with type 'E' (or '5'/'f') is an extended partition,
 * and entries after it become logical partitions inside it.
 */
export async function partitionImage(
  path: string,
  label: 'gpt' | 'dos',
  partitions: PartitionSpec[],
): Promise<void> {
  const sector = 512;
  const lines = [`label: ${label}`, 'unit: sectors', ''];
  for (const p of partitions) {
    const fields: string[] = [];
    if (p.start !== undefined) fields.push(`start=${p.start / sector}`);
    if (p.size !== undefined) fields.push(`size=${p.size / sector}`);
    if (p.type !== undefined) fields.push(`type=${p.type}`);
    lines.push(fields.join(', ') || ',');
  }
  await runTool('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', path], {
    input: `${lines.join('\n')}\n`,
  });
}

/** Where sfdisk put each partition, read back from the image (bytes). */
export async function readPartitionTable(path: string): Promise<{
  label: string;
  id: string;
  /** GPT only: first and last usable LBA. */
  firstLba?: number;
  lastLba?: number;
  partitions: { node: string; start: number; size: number; type: string }[];
}> {
  const { stdout } = await runTool('sfdisk', ['--json', path]);
  const table = (
    JSON.parse(stdout) as {
      partitiontable: {
        label: string;
        id: string;
        firstlba?: number;
        lastlba?: number;
        sectorsize?: number;
        partitions?: { node: string; start: number; size: number; type: string }[];
      };
    }
  ).partitiontable;
  const sectorSize = table.sectorsize ?? 512;
  return {
    label: table.label,
    id: table.id,
    ...(table.firstlba !== undefined ? { firstLba: table.firstlba } : {}),
    ...(table.lastlba !== undefined ? { lastLba: table.lastlba } : {}),
    partitions: (table.partitions ?? []).map((p) => ({
      node: p.node,
      start: p.start * sectorSize,
      size: p.size * sectorSize,
      type: p.type,
    })),
  };
}
