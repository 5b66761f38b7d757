// Loop devices for tests: attaches an image (with its partitions as /dev/loopNpK) and always detaches.
// Some kernels and containers do not scan partitions on attach and have no udev to make the nodes, so
// this asks the kernel with partx and, when devtmpfs does not make the nodes, makes them with mknod.
import { existsSync } from 'node:fs';
import { open, readdir, readFile, rm } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runTool } from './tools.ts';

export interface LoopDevice {
  /** e.g. /dev/loop3 */
  device: string;
  /** Partition nodes in table order, e.g. [/dev/loop3p1, /dev/loop3p2]; empty without a partition table. */
  partitions: string[];
  /** Detaches the device (and removes nodes this fixture made); safe to call twice. */
  detach(): Promise<void>;
}

async function partitionNames(loopName: string): Promise<string[]> {
  const entries = await readdir(`/sys/class/block/${loopName}`).catch(() => [] as string[]);
  return entries
    .filter((e) => e.startsWith(`${loopName}p`))
    .sort((a, b) => Number(a.slice(loopName.length + 1)) - Number(b.slice(loopName.length + 1)));
}

async function hasBootSignature(image: string): Promise<boolean> {
  const handle = await open(image, 'r');
  try {
    const sector = Buffer.alloc(512);
    const { bytesRead } = await handle.read(sector, 0, 512, 0);
    return bytesRead === 512 && sector[510] === 0x55 && sector[511] === 0xaa;
  } finally {
    await handle.close();
  }
}

/** Attaches `image` read-write (or read-only) and exposes its partitions. */
export async function attachLoop(image: string, options: { readOnly?: boolean } = {}): Promise<LoopDevice> {
  const args = ['--find', '--show', '--partscan'];
  if (options.readOnly) args.push('--read-only');
  const { stdout } = await runTool('losetup', [...args, image]);
  const device = stdout.trim();
  const loopName = basename(device);
  const madeNodes: string[] = [];
  let detached = false;
  const detach = async () => {
    if (detached) return;
    detached = true;
    for (const node of madeNodes) await rm(node, { force: true });
    await runTool('partx', ['--delete', device]).catch(() => undefined);
    for (let attempt = 0; ; attempt++) {
      try {
        await runTool('losetup', ['--detach', device]);
        return;
      } catch (error) {
        if (attempt >= 20) throw error;
        await sleep(100);
      }
    }
  };
  try {
    let names = await partitionNames(loopName);
    // An image whose first sector ends in 55 AA (MBR or protective MBR) should show partitions: give the
    // kernel's asynchronous scan, then partx, a moment before concluding there are none.
    const expectPartitions = await hasBootSignature(image);
    for (let attempt = 0; names.length === 0 && attempt < (expectPartitions ? 20 : 1); attempt++) {
      // partx exits non-zero on an image without a table; that simply means no partitions.
      await runTool('partx', ['--add', device]).catch(() => undefined);
      names = await partitionNames(loopName);
      if (names.length === 0 && expectPartitions) await sleep(50);
    }
    const partitions: string[] = [];
    for (const name of names) {
      const node = `/dev/${name}`;
      for (let i = 0; i < 20 && !existsSync(node); i++) await sleep(25);
      if (!existsSync(node)) {
        const [major, minor] = (await readFile(`/sys/class/block/${name}/dev`, 'utf8')).trim().split(':');
        await runTool('mknod', [node, 'b', major!, minor!]);
        madeNodes.push(node);
      }
      partitions.push(node);
    }
    return { device, partitions, detach };
  } catch (error) {
    await detach().catch(() => undefined);
    throw error;
  }
}

/** Attaches the byte range [offset, offset + size) of `image` as its own loop device (one partition alone). */
export async function attachLoopRange(image: string, offset: number, size: number): Promise<LoopDevice> {
  const { stdout } = await runTool('losetup', [
    '--find',
    '--show',
    '--offset',
    String(offset),
    '--sizelimit',
    String(size),
    image,
  ]);
  const device = stdout.trim();
  let detached = false;
  return {
    device,
    partitions: [],
    async detach() {
      if (detached) return;
      detached = true;
      await runTool('losetup', ['--detach', device]);
    },
  };
}

/** Runs `body` with `image` attached, detaching afterwards even on failure. */
export async function withLoop<T>(
  image: string,
  body: (loop: LoopDevice) => Promise<T>,
  options: { readOnly?: boolean } = {},
): Promise<T> {
  const loop = await attachLoop(image, options);
  try {
    return await body(loop);
  } finally {
    await loop.detach();
  }
}
