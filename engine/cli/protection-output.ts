// How the protection verbs print a disk's protection: the disk's state and why, what the next restart
// changes, then each volume's — or the protocol's DiskProtection objects as JSON.
import type { DiskProtection } from '../../protocol/protection.ts';

export function describeProtection(disk: DiskProtection): string {
  const lines = [`${disk.disk}  ${disk.kind}  ${disk.detail}`];
  if (disk.afterRestart) lines.push(`  after a restart: ${disk.afterRestart}`);
  for (const volume of disk.volumes) {
    if (volume.device === disk.disk && disk.volumes.length === 1) continue;
    lines.push(`  ${volume.device}  ${volume.kind}  ${volume.detail}`);
  }
  return `${lines.join('\n')}\n`;
}

export function printProtection(disks: DiskProtection[], json: boolean | undefined): void {
  if (json) process.stdout.write(`${JSON.stringify(disks)}\n`);
  else process.stdout.write(disks.length ? disks.map(describeProtection).join('') : 'No drives found.\n');
}
