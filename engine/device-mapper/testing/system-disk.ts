// The disk the protection tests treat as a machine's own: GPT, two 16 MiB ext4 partitions and one without a file
// system, attached as a loop device with its partitions.
import { join } from 'node:path';
import { buildTestDisk } from '../../testing/disk.ts';
import { attachLoop, type LoopDevice } from '../../testing/loop.ts';

export async function attachSystemDisk(dir: string): Promise<LoopDevice> {
  const image = await buildTestDisk(join(dir, 'disk.img'), {
    size: 48 << 20,
    table: 'gpt',
    partitions: [
      { size: 16 << 20, filesystem: 'ext4' },
      { size: 16 << 20, filesystem: 'ext4' },
      { filesystem: null },
    ],
  });
  return attachLoop(image.image);
}
