// One-call test disks: a sparse image, partitioned by sfdisk, each partition formatted and filled with
// files whose checksums are recorded, then unmounted and detached, so a test gets a plain image file
// (plus where everything is) and no loop device or mount outlives the fixture.
import { join } from 'node:path';
import {
  type Checksums,
  type FillOptions,
  fillFilesystem,
  makeFilesystem,
  type TestFilesystem,
} from './filesystems.ts';
import { makeSparseImage, partitionImage, readPartitionTable, withTempDir } from './image.ts';
import { attachLoop, attachLoopRange, type LoopDevice } from './loop.ts';

export interface TestPartitionSpec {
  /** Bytes; omitted on the last partition: the rest of the disk. */
  size?: number;
  /** sfdisk type; defaults to a Linux or Microsoft data type matching `filesystem`. */
  type?: string;
  /** File system to make, or null to leave the partition raw. */
  filesystem: TestFilesystem | null;
  /** Extra mkfs arguments (e.g. ['-O', '^64bit']). */
  mkfsArgs?: string[];
  /** Files to write (nothing when omitted). Swap and raw partitions get none. */
  fill?: FillOptions;
}

export interface TestDiskSpec {
  size: number;
  /** 'none': the file system spans the whole image (one partition spec, no table). */
  table: 'gpt' | 'dos' | 'none';
  partitions: TestPartitionSpec[];
}

export interface TestPartition {
  /** 1-based number as the partition table has it ('none': 1). */
  number: number;
  start: number;
  size: number;
  filesystem: TestFilesystem | null;
  /** Checksums of the files written (empty when none). */
  files: Checksums;
}

export interface TestDisk {
  image: string;
  size: number;
  partitions: TestPartition[];
}

function defaultType(table: 'gpt' | 'dos', filesystem: TestFilesystem | null): string | undefined {
  const microsoft = filesystem === 'ntfs' || filesystem === 'exfat' || filesystem?.startsWith('fat');
  if (table === 'gpt') {
    if (microsoft) return 'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7';
    if (filesystem === 'swap') return '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F';
    return undefined;
  }
  if (filesystem === 'ntfs' || filesystem === 'exfat') return '7';
  if (filesystem === 'fat12') return '1';
  if (filesystem === 'fat16') return '6';
  if (filesystem === 'fat32') return 'c';
  if (filesystem === 'swap') return '82';
  return undefined;
}

async function formatAndFill(device: string, spec: TestPartitionSpec): Promise<Checksums> {
  if (!spec.filesystem) return new Map();
  await makeFilesystem(device, spec.filesystem, spec.mkfsArgs ?? []);
  if (!spec.fill || spec.filesystem === 'swap') return new Map();
  return fillFilesystem(device, spec.filesystem, spec.fill);
}

/**
 * Builds the image at `path`. Needs root and loop devices (see loopUnavailableReason). Logical partitions of a
 * 'dos' table follow an extended partition spec (type 'E', filesystem null) in `partitions`.
 */
export async function buildTestDisk(path: string, spec: TestDiskSpec): Promise<TestDisk> {
  await makeSparseImage(path, spec.size);
  if (spec.table === 'none') {
    const only = spec.partitions[0];
    if (!only || spec.partitions.length !== 1)
      throw new Error('a disk without a table has exactly one file system');
    const loop = await attachLoopRange(path, 0, spec.size);
    try {
      const files = await formatAndFill(loop.device, only);
      return {
        image: path,
        size: spec.size,
        partitions: [{ number: 1, start: 0, size: spec.size, filesystem: only.filesystem, files }],
      };
    } finally {
      await loop.detach();
    }
  }
  const table = spec.table;
  await partitionImage(
    path,
    table,
    spec.partitions.map((p) => {
      const type = p.type ?? defaultType(table, p.filesystem);
      return { ...(p.size !== undefined ? { size: p.size } : {}), ...(type !== undefined ? { type } : {}) };
    }),
  );
  const layout = await readPartitionTable(path);
  const partitions: TestPartition[] = [];
  let loop: LoopDevice | null = null;
  try {
    loop = await attachLoop(path);
    for (const [i, placed] of layout.partitions.entries()) {
      const spec0 = spec.partitions[i];
      if (!spec0) break;
      const number = Number(/(\d+)$/.exec(placed.node)?.[1] ?? i + 1);
      // An extended partition's node covers only its first sector (or two): never format it.
      const node = loop.partitions.find((p) => p.endsWith(`p${number}`));
      if (!node)
        throw new Error(`the kernel did not expose partition ${number} of ${path} on ${loop.device}`);
      const files = spec0.filesystem ? await formatAndFill(node, spec0) : new Map<string, string>();
      partitions.push({
        number,
        start: placed.start,
        size: placed.size,
        filesystem: spec0.filesystem,
        files,
      });
    }
  } finally {
    await loop?.detach();
  }
  return { image: path, size: spec.size, partitions };
}

/** Builds a test disk in a fresh temp dir, runs `body`, and removes everything afterwards. */
export async function withTestDisk<T>(spec: TestDiskSpec, body: (disk: TestDisk) => Promise<T>): Promise<T> {
  return withTempDir(async (dir) => body(await buildTestDisk(join(dir, 'disk.img'), spec)));
}
