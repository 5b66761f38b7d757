// partclone as the reference for used-block maps: its domain-log mode (-D) writes the byte ranges it would
// copy, which tests compare with Diskline's maps range for range, and its clone mode prints the block count.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mergeRanges } from '../device/ranges.ts';
import type { ByteRange } from '../device/types.ts';
import { withTempDir } from './image.ts';
import { runTool } from './tools.ts';

/** partclone's tool for a file system family: ext2/3/4 → partclone.extfs, fat* → partclone.fat, … */
export function partcloneTool(filesystem: string): string {
  if (filesystem.startsWith('ext')) return 'partclone.extfs';
  if (filesystem.startsWith('fat') || filesystem === 'vfat') return 'partclone.fat';
  return `partclone.${filesystem}`;
}

/** The used byte ranges partclone finds on `source` (a device or image file holding one file system). */
export async function partcloneUsedRanges(filesystem: string, source: string): Promise<ByteRange[]> {
  return withTempDir(async (dir) => {
    const log = join(dir, 'domain.log');
    await runTool(partcloneTool(filesystem), ['-D', '-s', source, '-O', log, '-q']);
    const ranges: ByteRange[] = [];
    for (const line of (await readFile(log, 'utf8')).split('\n')) {
      const match = /^0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+\+/i.exec(line.trim());
      if (match)
        ranges.push({ start: Number.parseInt(match[1]!, 16), length: Number.parseInt(match[2]!, 16) });
    }
    return mergeRanges(ranges);
  });
}

/** partclone's own summary of a clone to nowhere: block size and blocks in use. */
export async function partcloneUsage(
  filesystem: string,
  source: string,
): Promise<{ blockSize: number; usedBlocks: number; totalBlocks: number }> {
  const { stdout, stderr } = await runTool(partcloneTool(filesystem), [
    '-c',
    '-s',
    source,
    '-O',
    '/dev/null',
  ]);
  const text = `${stdout}\n${stderr}`.replace(/\r/g, '\n');
  const used = /Space in use:.*?=\s*(\d+)\s+Blocks/.exec(text);
  const total = /Device size:.*?=\s*(\d+)\s+Blocks/.exec(text);
  const block = /Block size:\s*(\d+)\s+Byte/.exec(text);
  if (!used || !total || !block)
    throw new Error(`cannot find the usage summary in partclone's output:\n${text}`);
  return { blockSize: Number(block[1]), usedBlocks: Number(used[1]), totalBlocks: Number(total[1]) };
}
