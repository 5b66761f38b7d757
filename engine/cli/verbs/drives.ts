// `diskline drives`: the disks (system disk flagged) and registered image files, with their partitions.
import type { Drive } from '../../../protocol/model.ts';
import { connectEngine } from '../../api/client.ts';
import { parseVerbArgs, type Verb } from '../verb.ts';

function bytes(size: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

function describe(drive: Drive): string {
  const flags = [
    drive.isSystem ? 'system disk' : null,
    drive.isRemovable ? 'removable' : null,
    drive.mountpoints.length ? `mounted on ${drive.mountpoints.join(', ')}` : null,
    drive.attachedAs ? `attached as ${drive.attachedAs}` : null,
  ].filter(Boolean);
  const lines = [
    `${drive.device}  ${bytes(drive.size)}  ${drive.description}${flags.length ? `  [${flags.join('; ')}]` : ''}`,
  ];
  if (drive.partitionTable) lines.push(`  partition table: ${drive.partitionTable}`);
  for (const partition of drive.partitions) {
    lines.push(
      `  ${String(partition.index).padStart(2)}  ${bytes(partition.size).padStart(10)}  ${partition.filesystem ?? partition.type}` +
        `  ${bytes(partition.usedBytes)} used`,
    );
  }
  return lines.join('\n');
}

export const verb: Verb = {
  usage: 'drives [--json]',
  summary: 'List the disks and registered image files that can be backed up or restored to',
  help: `Options:
  --json  print the drives as a JSON array (protocol Drive objects)
Talks to the daemon when its socket (DISKLINE_SOCKET) answers, otherwise reads the drives itself.`,
  async run(args) {
    const { values } = parseVerbArgs(args, { json: { type: 'boolean' } });
    const client = await connectEngine();
    try {
      const drives = await client.call('drives.list', {});
      if (values.json) process.stdout.write(`${JSON.stringify(drives)}\n`);
      else
        process.stdout.write(drives.length ? `${drives.map(describe).join('\n')}\n` : 'No drives found.\n');
      return;
    } finally {
      await client.close();
    }
  },
};
