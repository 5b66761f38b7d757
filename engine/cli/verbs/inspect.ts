// `diskline inspect <device|image> [--json]`: the partition table, each partition's file system, block
// size and used bytes, read from allocation metadata (the same map a backup copies).
import { openReader } from '../../device/open.ts';
import { type DiskLayout, inspectDisk } from '../../layout/inspect.ts';
import { writeJson } from '../json-output.ts';
import { parseVerbArgs, UsageError, type Verb } from '../verb.ts';

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The JSON shape: the contract fields first, then extras; ranges only when asked for. */
export function layoutJson(layout: DiskLayout, withRanges: boolean) {
  return {
    path: layout.path,
    size: layout.size,
    partitionTable: layout.partitionTable,
    sectorSize: layout.sectorSize,
    ...(layout.diskId ? { diskId: layout.diskId } : {}),
    usedBytes: layout.usedBytes,
    partitions: layout.partitions.map(({ usedRanges, ...partition }) => ({
      ...partition,
      ...(withRanges ? { usedRanges } : {}),
    })),
    ...(withRanges ? { usedRanges: layout.usedRanges } : {}),
    warnings: layout.warnings,
  };
}

export function layoutTable(layout: DiskLayout): string {
  const share = layout.size ? ((100 * layout.usedBytes) / layout.size).toFixed(1) : '0';
  const lines = [
    `${layout.path}: ${formatBytes(layout.size)}, ${layout.partitionTable === 'none' ? 'no partition table' : layout.partitionTable.toUpperCase()}, ` +
      `${formatBytes(layout.usedBytes)} used (${share}%)`,
  ];
  const rows = [['#', 'start', 'size', 'type', 'file system', 'block', 'used']];
  for (const p of layout.partitions) {
    rows.push([
      String(p.index),
      formatBytes(p.start),
      formatBytes(p.size),
      p.typeName ?? p.type,
      (p.filesystem ?? 'unknown') + (p.allBlocks ? ' (all blocks)' : '') + (p.label ? ` "${p.label}"` : ''),
      String(p.blockSize),
      formatBytes(p.usedBytes),
    ]);
  }
  const widths = rows[0]!.map((_, column) =>
    rows.reduce((widest, row) => Math.max(widest, row[column]!.length), 0),
  );
  for (const row of rows)
    lines.push(`  ${row.map((cell, column) => cell.padEnd(widths[column]!)).join('  ')}`.trimEnd());
  for (const warning of layout.warnings) lines.push(`warning: ${warning}`);
  return `${lines.join('\n')}\n`;
}

export const verb: Verb = {
  usage: 'inspect <device|image> [--json] [--ranges] [--strict]',
  summary: 'Show the partitions, file systems, block sizes and used bytes of a disk or image',
  help:
    '  --json     print JSON: {size, partitionTable, partitions: [{index, start, size, type, filesystem, blockSize, usedBytes, …}], …}\n' +
    '  --ranges   include the used byte ranges (what a backup copies) in the JSON\n' +
    '  --strict   fail (exit 4) on damaged file-system metadata instead of counting every block of it as used',
  async run(args) {
    const { values, positionals } = parseVerbArgs(args, {
      json: { type: 'boolean' },
      ranges: { type: 'boolean' },
      strict: { type: 'boolean' },
    });
    if (positionals.length !== 1) throw new UsageError('give exactly one device or image to inspect');
    const reader = await openReader(positionals[0]!);
    try {
      const layout = await inspectDisk(reader, { strict: values.strict ?? false });
      const write = (text: string) => process.stdout.write(text);
      if (values.json) writeJson(layoutJson(layout, values.ranges ?? false), write, 2);
      else write(layoutTable(layout));
      return;
    } finally {
      await reader.close();
    }
  },
};
