// Shrinks and grows the file systems Diskline knows, each with its own tool, on a device that holds exactly the
// file system (a loop device over a staging file or over a partition of the target): resize2fs (which moves the
// blocks that lie past the new end before cutting it), ntfsresize, btrfs's own resize on a temporary mount,
// xfs_growfs (growing only), and mkswap keeping the UUID and label. Each tool is asked its minimum first, so a
// file system that cannot get that small is refused with the size it needs, before anything is changed.
import { runTool, withMount } from '../volume-files/loop-range.ts';

/** The file system cannot be made as small as planned; `minimumBytes` is the least it can have. */
export class ShrinkImpossibleError extends Error {
  readonly minimumBytes: number;
  constructor(message: string, minimumBytes: number) {
    super(message);
    this.name = 'ShrinkImpossibleError';
    this.minimumBytes = minimumBytes;
  }
}

async function blkidValue(device: string, tag: string): Promise<string | null> {
  const { stdout } = await runTool('blkid', ['-p', '-o', 'value', '-s', tag, device], { okExits: [2] });
  return stdout.trim() || null;
}

async function extCheck(device: string): Promise<void> {
  // 1: errors were corrected; both leave a consistent file system that resize2fs accepts.
  await runTool('e2fsck', ['-f', '-y', device], { okExits: [1] });
}

async function extMinimum(device: string): Promise<number> {
  const { stdout } = await runTool('resize2fs', ['-P', device]);
  const blocks = Number(/minimum size of the filesystem:\s*(\d+)/i.exec(stdout)?.[1]);
  const header = (await runTool('dumpe2fs', ['-h', device])).stdout;
  const blockSize = Number(/^Block size:\s*(\d+)/m.exec(header)?.[1]);
  if (!blocks || !blockSize)
    throw new Error(`resize2fs -P on ${device} printed no minimum size: ${stdout.trim()}`);
  return blocks * blockSize;
}

async function ntfsMinimum(device: string): Promise<number> {
  const { stdout } = await runTool('ntfsresize', ['--info', '--force', '--no-progress-bar', device]);
  const bytes = Number(/You might resize at (\d+) bytes/.exec(stdout)?.[1]);
  if (!bytes)
    throw new Error(
      `ntfsresize --info on ${device} printed no minimum size: ${stdout.trim().split('\n').slice(-2).join(' / ')}`,
    );
  return bytes;
}

async function btrfsMinimum(dir: string): Promise<number> {
  const { stdout } = await runTool('btrfs', ['inspect-internal', 'min-dev-size', dir]);
  const bytes = Number(/^(\d+) bytes/.exec(stdout.trim())?.[1]);
  if (!bytes) throw new Error(`btrfs inspect-internal min-dev-size printed no size: ${stdout.trim()}`);
  return bytes;
}

function tooSmall(filesystem: string, device: string, minimum: number, size: number): ShrinkImpossibleError {
  return new ShrinkImpossibleError(
    `the ${filesystem} file system on ${device} needs at least ${minimum} bytes; the planned partition has ${size}`,
    minimum,
  );
}

/**
 * Shrinks the file system on `device` to `size` bytes. `sized` opens the same file system on a device of exactly
 * `size` bytes, for tools that fill their device (mkswap). Throws ShrinkImpossibleError when it cannot get that
 * small (nothing changed then).
 */
export async function shrinkFilesystem(
  device: string,
  filesystem: string,
  size: number,
  sized: <T>(body: (device: string) => Promise<T>) => Promise<T>,
): Promise<void> {
  switch (filesystem) {
    case 'ext2':
    case 'ext3':
    case 'ext4': {
      await extCheck(device);
      const minimum = await extMinimum(device);
      if (minimum > size) throw tooSmall(filesystem, device, minimum, size);
      await runTool('resize2fs', [device, `${Math.floor(size / 1024)}K`]);
      // The shrunk file system is checked before it is copied anywhere.
      await runTool('e2fsck', ['-f', '-n', device]);
      return;
    }
    case 'ntfs': {
      const minimum = await ntfsMinimum(device);
      if (minimum > size) throw tooSmall(filesystem, device, minimum, size);
      await runTool('ntfsresize', ['--force', '--no-progress-bar', '--size', String(size), device], {
        input: 'y\n',
      });
      return;
    }
    case 'btrfs': {
      await withMount(device, 'btrfs', [`device=${device}`], async (dir) => {
        const minimum = await btrfsMinimum(dir);
        if (minimum > size) throw tooSmall(filesystem, device, minimum, size);
        await runTool('btrfs', ['filesystem', 'resize', `1:${size}`, dir]);
      });
      return;
    }
    case 'swap':
      await remakeSwap(device, sized);
      return;
    default:
      throw new ShrinkImpossibleError(
        `Diskline cannot shrink a ${filesystem} file system`,
        Number.POSITIVE_INFINITY,
      );
  }
}

/** Grows the file system on `device` to fill it. Returns a warning when there is no tool for it (it keeps its size). */
export async function growFilesystem(device: string, filesystem: string | null): Promise<string | null> {
  switch (filesystem) {
    case 'ext2':
    case 'ext3':
    case 'ext4':
      await extCheck(device);
      await runTool('resize2fs', [device]);
      return null;
    case 'ntfs':
      await runTool('ntfsresize', ['--force', '--no-progress-bar', device], { input: 'y\n' });
      return null;
    case 'btrfs':
      await withMount(device, 'btrfs', [`device=${device}`], (dir) =>
        runTool('btrfs', ['filesystem', 'resize', '1:max', dir]),
      );
      return null;
    case 'xfs':
      await withMount(device, 'xfs', [], (dir) => runTool('xfs_growfs', [dir]));
      return null;
    case 'swap':
      await remakeSwap(device, (body) => body(device));
      return null;
    default:
      return `the ${filesystem ?? 'unknown'} content of the grown partition keeps its size`;
  }
}

/** Swap holds nothing across a restore: it is made again at the new size with its UUID and label. */
async function remakeSwap(device: string, sized: <T>(body: (device: string) => Promise<T>) => Promise<T>) {
  const uuid = await blkidValue(device, 'UUID');
  const label = await blkidValue(device, 'LABEL');
  await sized((fitted) =>
    runTool('mkswap', [...(uuid ? ['-U', uuid] : []), ...(label ? ['-L', label] : []), fitted]),
  );
}
