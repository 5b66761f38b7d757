// The files inside one partition of a disk image or device, for checks and fixes that read a restored system's
// configuration (fstab, crypttab, grub.cfg, the ESP's loaders): Linux file systems through a temporary mount,
// FAT through mtools (no kernel driver needed), NTFS through ntfs-3g. Every path comes from the disk's own
// content and is resolved beneath the volume's root — '..' stops at the root and a symbolic link, absolute or
// not, is followed inside the volume, never into the host's files.
import { lstat, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runTool, ToolError, withLoopRange, withMount } from './loop-range.ts';

export interface VolumeFiles {
  /** blkid's name of the file system: ext4, vfat, btrfs, xfs, ntfs, … */
  readonly type: string;
  readonly uuid: string | null;
  readonly label: string | null;
  /** A regular file's content, or null when it does not exist (FAT: names compare without case). */
  read(path: string): Promise<Buffer | null>;
  /** The names in a directory, or null when it does not exist. */
  list(path: string): Promise<string[] | null>;
  /** Replaces (or creates) a regular file; only on a volume opened writable. */
  write(path: string, data: Buffer): Promise<void>;
}

const MAX_LINK_HOPS = 40;
const mtoolsEnv = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

function components(path: string): string[] {
  return path.split('/').filter((part) => part !== '' && part !== '.');
}

/** Resolves `path` beneath `root` as the volume's own system would see it; null when a component is missing. */
async function resolveBeneath(root: string, path: string, followLast = true): Promise<string | null> {
  let pending = components(path);
  const resolved: string[] = [];
  let hops = 0;
  while (pending.length) {
    const part = pending.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = join(root, ...resolved, part);
    const info = await lstat(candidate).catch(() => null);
    if (!info) return null;
    if (info.isSymbolicLink() && (followLast || pending.length > 0)) {
      if (++hops > MAX_LINK_HOPS) return null;
      const target = await readlink(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      pending = [...components(target), ...pending];
      continue;
    }
    resolved.push(part);
  }
  return join(root, ...resolved);
}

function mountedFiles(root: string, type: string, uuid: string | null, label: string | null): VolumeFiles {
  return {
    type,
    uuid,
    label,
    async read(path) {
      const real = await resolveBeneath(root, path);
      if (!real || !(await lstat(real)).isFile()) return null;
      return readFile(real);
    },
    async list(path) {
      const real = await resolveBeneath(root, path);
      if (!real || !(await lstat(real)).isDirectory()) return null;
      return readdir(real);
    },
    async write(path, data) {
      const real = await resolveBeneath(root, path);
      if (!real || !(await lstat(real)).isFile())
        throw new Error(`${path} is not a regular file on the ${type} volume`);
      await writeFile(real, data);
    },
  };
}

function fatFiles(device: string, uuid: string | null, label: string | null, writable: boolean): VolumeFiles {
  const dosPath = (path: string) => `::/${components(path).join('/')}`;
  return {
    type: 'vfat',
    uuid,
    label,
    async read(path) {
      try {
        const { stdout } = await runTool('mtype', ['-i', device, dosPath(path)], {
          binary: true,
          env: mtoolsEnv,
        });
        return stdout as unknown as Buffer;
      } catch (error) {
        if (error instanceof ToolError) return null;
        throw error;
      }
    },
    async list(path) {
      try {
        const { stdout } = await runTool('mdir', ['-b', '-i', device, dosPath(path)], { env: mtoolsEnv });
        const prefix = `${dosPath(path).replace(/\/$/, '')}/`;
        return String(stdout)
          .split('\n')
          .map((line) => line.trim())
          .filter(Boolean)
          .map((line) =>
            line.toLowerCase().startsWith(prefix.toLowerCase()) ? line.slice(prefix.length) : line,
          )
          .map((line) => line.replace(/\/$/, ''));
      } catch (error) {
        if (error instanceof ToolError) return null;
        throw error;
      }
    },
    async write(path, data) {
      if (!writable) throw new Error('the FAT volume was opened read-only');
      const parts = components(path);
      for (let depth = 1; depth < parts.length; depth++) {
        await runTool('mmd', ['-D', 's', '-i', device, dosPath(parts.slice(0, depth).join('/'))], {
          env: mtoolsEnv,
        }).catch(() => undefined);
      }
      await runTool('mcopy', ['-o', '-i', device, '-', dosPath(path)], { input: data, env: mtoolsEnv });
    },
  };
}

async function probe(device: string, tag: string): Promise<string | null> {
  const { stdout } = await runTool('blkid', ['-p', '-o', 'value', '-s', tag, device], { okExits: [2] });
  return String(stdout).trim() || null;
}

/** What blkid finds on [start, start + size) of `disk`: type, UUID, label (no mount). */
export async function probeVolume(
  disk: string,
  start: number,
  size: number,
): Promise<{ type: string | null; uuid: string | null; label: string | null }> {
  return withLoopRange(
    disk,
    start,
    size,
    async (device) => ({
      type: await probe(device, 'TYPE'),
      uuid: await probe(device, 'UUID'),
      label: await probe(device, 'LABEL'),
    }),
    { readOnly: true },
  );
}

const MOUNT_OPTIONS: Record<string, { readOnly: string[]; writable: string[] }> = {
  ext2: { readOnly: ['ro'], writable: [] },
  ext3: { readOnly: ['ro', 'noload'], writable: [] },
  ext4: { readOnly: ['ro', 'noload'], writable: [] },
  xfs: { readOnly: ['ro', 'norecovery'], writable: [] },
  btrfs: { readOnly: ['ro'], writable: [] },
  ntfs: { readOnly: ['ro'], writable: [] },
};

/**
 * Opens the file system on [start, start + size) of `disk` for the body; `files` is null when it holds none
 * Diskline can read. Read-only unless `writable`.
 */
export async function withVolumeFiles<T>(
  disk: string,
  start: number,
  size: number,
  options: { writable?: boolean },
  body: (files: VolumeFiles | null) => Promise<T>,
): Promise<T> {
  const writable = options.writable === true;
  return withLoopRange(
    disk,
    start,
    size,
    async (device) => {
      const type = await probe(device, 'TYPE');
      const uuid = await probe(device, 'UUID');
      const label = await probe(device, 'LABEL');
      if (type === 'vfat') return body(fatFiles(device, uuid, label, writable));
      const mountOptions = type ? MOUNT_OPTIONS[type] : undefined;
      if (!type || !mountOptions) return body(null);
      const extra = type === 'btrfs' ? [`device=${device}`] : [];
      return withMount(
        device,
        type,
        [...(writable ? mountOptions.writable : mountOptions.readOnly), ...extra],
        (dir) => body(mountedFiles(dir, type, uuid, label)),
      );
    },
    { readOnly: !writable },
  );
}
