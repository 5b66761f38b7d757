// Plans the partition layout a restore writes onto a target of another size: partitions stay in order, one
// partition (the last, or the one chosen) is shrunk or grown, the partitions after it move to keep their sizes,
// every start and end stays on a 1 MiB boundary, and a GPT's backup header and table go to the target's end.
// Pure arithmetic over the source's layout: nothing is read or written here; a plan that cannot work says why
// and how big a target would do.

export const ALIGNMENT = 1024 * 1024;
/** A GPT entry array of 128 entries of 128 bytes: what every partitioner writes. */
export const GPT_ENTRY_ARRAY_BYTES = 128 * 128;

/** File systems whose size can be reduced, and how. */
const SHRINKERS: Record<string, string> = {
  ext2: 'resize2fs',
  ext3: 'resize2fs',
  ext4: 'resize2fs',
  ntfs: 'ntfsresize',
  btrfs: 'btrfs filesystem resize',
  swap: 'mkswap (same UUID and label)',
};
/** File systems whose size can be increased, and how. */
const GROWERS: Record<string, string> = {
  ...SHRINKERS,
  xfs: 'xfs_growfs',
};
/** Why a file system cannot be made smaller. */
const UNSHRINKABLE: Record<string, string> = {
  xfs: 'XFS cannot be shrunk',
  exfat: 'exFAT cannot be resized by any tool Diskline uses',
  fat12: 'FAT cannot be shrunk by any tool Diskline uses (its clusters would need remapping)',
  fat16: 'FAT cannot be shrunk by any tool Diskline uses (its clusters would need remapping)',
  fat32: 'FAT cannot be shrunk by any tool Diskline uses (its clusters would need remapping)',
};

export interface SourcePartition {
  index: number;
  start: number;
  size: number;
  type: string;
  /** "ext4", "ntfs", …; null when no known file system was found. */
  filesystem: string | null;
  usedBytes: number;
}

export interface SourceLayout {
  table: 'gpt' | 'mbr' | 'none';
  sectorSize: number;
  size: number;
  partitions: SourcePartition[];
}

export interface FitOptions {
  /** Onto a bigger target: grow the resized partition and its file system to fill it. */
  grow?: boolean;
  /** The partition (by index) to shrink or grow; default the one that ends last. */
  resize?: number;
}

export type PartitionChange = 'kept' | 'shrunk' | 'grown' | 'moved';

export interface PlannedPartition {
  index: number;
  filesystem: string | null;
  usedBytes: number;
  from: { start: number; size: number };
  to: { start: number; size: number };
  change: PartitionChange;
  /** The tool that resizes its file system, for a shrunk or grown partition. */
  resizeWith?: string;
}

export type FitMode =
  /** Same size: the table is written as it was. */
  | 'as-is'
  /** A different size, every partition where it was: only the GPT's backup structures move to the new end. */
  | 'table-moved'
  | 'shrink'
  | 'grow';

export interface FitRefusal {
  reason: string;
  /** The smallest target that would work, in bytes. */
  neededBytes: number;
}

export interface FitPlan {
  table: 'gpt' | 'mbr' | 'none';
  sectorSize: number;
  sourceSize: number;
  targetSize: number;
  mode: FitMode;
  /** Every partition, in index order, where it comes from and where it goes. */
  partitions: PlannedPartition[];
  /** Set when the restore cannot be done onto this target; nothing is written then. */
  refusal: FitRefusal | null;
  warnings: string[];
}

const alignDown = (value: number) => Math.floor(value / ALIGNMENT) * ALIGNMENT;
const alignUp = (value: number) => Math.ceil(value / ALIGNMENT) * ALIGNMENT;

/** Bytes at the end of the disk a table keeps for itself: a GPT's backup entry array and header. */
export function tableTailBytes(table: SourceLayout['table'], sectorSize: number): number {
  if (table !== 'gpt') return 0;
  return Math.ceil(GPT_ENTRY_ARRAY_BYTES / sectorSize) * sectorSize + sectorSize;
}

/** The first byte past the space partitions may use on a disk of `size` bytes, on a 1 MiB boundary. */
export function usableEnd(table: SourceLayout['table'], sectorSize: number, size: number): number {
  return alignDown(size - tableTailBytes(table, sectorSize));
}

/** Plans how the source's layout goes onto a target of `targetSize` bytes. */
export function planFit(source: SourceLayout, targetSize: number, options: FitOptions = {}): FitPlan {
  const partitions = [...source.partitions].sort((a, b) => a.start - b.start);
  const base = {
    table: source.table,
    sectorSize: source.sectorSize,
    sourceSize: source.size,
    targetSize,
  };
  const kept = (p: SourcePartition): PlannedPartition => ({
    index: p.index,
    filesystem: p.filesystem,
    usedBytes: p.usedBytes,
    from: { start: p.start, size: p.size },
    to: { start: p.start, size: p.size },
    change: 'kept',
  });
  const byIndex = (list: PlannedPartition[]) => [...list].sort((a, b) => a.index - b.index);
  const warnings: string[] = [];
  const end = usableEnd(source.table, source.sectorSize, targetSize);
  const layoutEnd = Math.max(0, ...partitions.map((p) => p.start + p.size));
  const tail = tableTailBytes(source.table, source.sectorSize);
  const refuse = (reason: string, neededBytes: number, planned = partitions.map(kept)): FitPlan => ({
    ...base,
    mode: targetSize < source.size ? 'shrink' : 'grow',
    partitions: byIndex(planned),
    refusal: { reason, neededBytes },
    warnings,
  });
  /** Every partition stays where it is: the table is written as it was, or only its GPT tail moves. */
  const unchanged = (mode: 'as-is' | 'table-moved'): FitPlan => ({
    ...base,
    mode,
    partitions: byIndex(partitions.map(kept)),
    refusal: null,
    warnings,
  });

  if (targetSize === source.size && !options.grow) return unchanged('as-is');
  if (source.table === 'none') {
    // A file system on the whole disk: no table to rewrite; only a bigger target fits it as it is.
    if (targetSize >= source.size && !options.grow) {
      return { ...base, mode: 'as-is', partitions: partitions.map(kept), refusal: null, warnings };
    }
    return refuse(
      `it holds ${targetSize} bytes but the point needs ${source.size}, and the point has no partition table (one file system on the whole disk) for Diskline to fit; choose a target at least that big`,
      source.size,
    );
  }
  if (partitions.length === 0) return unchanged('table-moved');
  const chosen =
    options.resize === undefined
      ? partitions.reduce((a, b) => (b.start + b.size >= a.start + a.size ? b : a))
      : partitions.find((p) => p.index === options.resize);
  if (!chosen) {
    return refuse(
      `there is no partition ${options.resize} to resize (partitions: ${partitions.map((p) => p.index).join(', ')})`,
      source.size,
    );
  }
  const fitsAsIs = layoutEnd <= end;
  if (fitsAsIs && !options.grow) {
    // Free space at the source's end absorbs the difference: nothing moves.
    return unchanged('table-moved');
  }
  // The partitions after the chosen one keep their sizes and move up (or down) to sit right after it.
  const after = partitions.filter((p) => p.start > chosen.start);
  // A logical partition's place is written in the chain of extended boot records: the last one may change size,
  // none is moved.
  const movedLogical = after.find((p) => p.index >= 5);
  if (source.table === 'mbr' && movedLogical) {
    return refuse(
      `logical partition ${movedLogical.index} would have to move; Diskline resizes the last logical partition but moves none`,
      alignUp(layoutEnd),
    );
  }
  const afterBytes = after.reduce((sum, p) => sum + alignUp(p.size), 0);
  const newSize = alignDown(end - afterBytes) - chosen.start;
  const growing = newSize > chosen.size;
  const filesystem = chosen.filesystem ?? 'unknown';
  if (!growing) {
    const why = UNSHRINKABLE[filesystem];
    const neededBytes = alignUp(layoutEnd) + tail;
    if (!SHRINKERS[filesystem]) {
      return refuse(
        `partition ${chosen.index} (${filesystem === 'unknown' ? 'no file system Diskline knows' : filesystem}) must shrink from ${chosen.size} to ${Math.max(0, newSize)} bytes, and ${why ?? 'Diskline cannot shrink it'}; a target of at least ${neededBytes} bytes takes it unchanged`,
        neededBytes,
      );
    }
    // What the file system holds must fit; its own tool knows the exact minimum and is asked before any write.
    if (newSize < chosen.usedBytes) {
      const shortBy = chosen.usedBytes - newSize;
      const neededForData = alignUp(targetSize + shortBy) + tail;
      return refuse(
        `partition ${chosen.index} (${filesystem}) holds ${chosen.usedBytes} bytes but would have only ${Math.max(0, newSize)} on this target; a target of at least ${neededForData} bytes is needed`,
        neededForData,
      );
    }
  }
  if (growing && !options.grow) return unchanged('table-moved');
  if (growing && !GROWERS[filesystem]) {
    warnings.push(
      `partition ${chosen.index} grows, but its ${filesystem === 'unknown' ? 'content' : filesystem} keeps its size (no tool Diskline uses grows it)`,
    );
  }
  const planned: PlannedPartition[] = [];
  let next = alignDown(end - afterBytes);
  for (const p of partitions) {
    if (p.start < chosen.start) planned.push(kept(p));
    else if (p === chosen) {
      const resizeWith = growing ? GROWERS[filesystem] : SHRINKERS[filesystem];
      planned.push({
        ...kept(p),
        to: { start: p.start, size: newSize },
        change: growing ? 'grown' : 'shrunk',
        ...(resizeWith ? { resizeWith } : {}),
      });
    } else {
      planned.push({
        ...kept(p),
        to: { start: next, size: p.size },
        change: next === p.start ? 'kept' : 'moved',
      });
      next += alignUp(p.size);
    }
  }
  return {
    ...base,
    mode: growing ? 'grow' : 'shrink',
    partitions: byIndex(planned),
    refusal: null,
    warnings,
  };
}

/** The plan as lines for a person: one per partition, then the refusal or the warnings. */
export function describeFitPlan(plan: FitPlan): string[] {
  const mib = (bytes: number) => `${(bytes / ALIGNMENT).toFixed(bytes % ALIGNMENT ? 1 : 0)} MiB`;
  const lines = [
    `${plan.table.toUpperCase()} disk of ${mib(plan.sourceSize)} onto ${mib(plan.targetSize)}: ${
      {
        'as-is': 'the layout is written as it was',
        'table-moved': 'partitions stay where they are; the partition table is fitted to the new size',
        shrink: 'a partition is shrunk to fit',
        grow: 'a partition is grown to fill the disk',
      }[plan.mode]
    }`,
  ];
  for (const p of plan.partitions) {
    const what = `${p.filesystem ?? 'unknown'}, ${mib(p.usedBytes)} used`;
    const where = `${mib(p.from.start)} +${mib(p.from.size)}`;
    const to =
      p.change === 'kept'
        ? 'kept'
        : `${p.change} to ${mib(p.to.start)} +${mib(p.to.size)}${p.resizeWith ? ` (${p.resizeWith})` : ''}`;
    lines.push(`  partition ${p.index} (${what}) at ${where}: ${to}`);
  }
  if (plan.refusal) lines.push(`refused: ${plan.refusal.reason}`);
  for (const warning of plan.warnings) lines.push(`warning: ${warning}`);
  return lines;
}
