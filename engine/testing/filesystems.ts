// Real file systems for tests: mkfs of each kind Diskline reads, mount/unmount (ntfs-3g through FUSE),
// and trees of files with random content whose SHA-256 checksums are recorded, so a test can prove
// that bytes survived a backup and restore.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, readFile, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runTool } from './tools.ts';

export type TestFilesystem =
  | 'ext2'
  | 'ext3'
  | 'ext4'
  | 'fat12'
  | 'fat16'
  | 'fat32'
  | 'ntfs'
  | 'exfat'
  | 'xfs'
  | 'btrfs'
  | 'swap';

/** Makes a file system on `device` (a block device or an image file). `extraArgs` go to the mkfs tool. */
export async function makeFilesystem(
  device: string,
  kind: TestFilesystem,
  extraArgs: string[] = [],
): Promise<void> {
  switch (kind) {
    case 'ext2':
    case 'ext3':
    case 'ext4':
      await runTool(`mkfs.${kind}`, ['-q', '-F', ...extraArgs, device]);
      return;
    case 'fat12':
    case 'fat16':
    case 'fat32':
      await runTool('mkfs.vfat', ['-F', kind.slice(3), ...extraArgs, device]);
      return;
    case 'ntfs':
      await runTool('mkfs.ntfs', ['--quick', '--force', '--quiet', ...extraArgs, device]);
      return;
    case 'exfat':
      await runTool('mkfs.exfat', [...extraArgs, device]);
      return;
    case 'xfs':
      // xfsprogs refuses file systems under 300 MiB unless it believes it runs under its own test suite.
      await runTool('mkfs.xfs', ['-f', '-q', ...extraArgs, device], {
        env: { TEST_DIR: tmpdir(), TEST_DEV: device, QA_CHECK_FS: '1' },
      });
      return;
    case 'btrfs':
      await runTool('mkfs.btrfs', ['-f', '-q', ...extraArgs, device]);
      return;
    case 'swap':
      await runTool('mkswap', [...extraArgs, device]);
      return;
  }
}

/** Mounts `device` on a fresh temp dir; returns the dir. NTFS goes through ntfs-3g (FUSE). */
export async function mountFilesystem(
  device: string,
  kind: TestFilesystem,
  options: { readOnly?: boolean } = {},
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-mnt-'));
  try {
    if (kind === 'ntfs') {
      await runTool('ntfs-3g', options.readOnly ? ['-o', 'ro', device, dir] : [device, dir]);
    } else if (kind === 'exfat') {
      // Through FUSE: many kernels here have no exfat module.
      await runTool('mount.exfat-fuse', options.readOnly ? ['-o', 'ro', device, dir] : [device, dir]);
    } else {
      const type = kind.startsWith('fat') ? 'vfat' : kind;
      await runTool('mount', ['-t', type, ...(options.readOnly ? ['-o', 'ro'] : []), device, dir]);
    }
    return dir;
  } catch (error) {
    await rmdir(dir).catch(() => undefined);
    throw error;
  }
}

/** Unmounts and removes the mount dir; retries while the mount is briefly busy. */
export async function unmountFilesystem(dir: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await runTool('umount', [dir]);
      break;
    } catch (error) {
      if (attempt >= 20) throw error;
      await sleep(100);
    }
  }
  await rmdir(dir);
}

/** Runs `body` with `device` mounted; always unmounts. */
export async function withMount<T>(
  device: string,
  kind: TestFilesystem,
  body: (dir: string) => Promise<T>,
  options: { readOnly?: boolean } = {},
): Promise<T> {
  const dir = await mountFilesystem(device, kind, options);
  try {
    return await body(dir);
  } finally {
    await unmountFilesystem(dir);
  }
}

/** Path relative to the file system's root → SHA-256 hex of the file's content. */
export type Checksums = Map<string, string>;

export interface FillOptions {
  /** How many files (default 20). */
  files?: number;
  /** Largest file in bytes (default 256 KiB); sizes vary between 0 and this. */
  maxFileSize?: number;
  /** Files are spread over this many subdirectories (default 3). */
  directories?: number;
  /**
   * Also write this many extra files and delete them again, so free space holds stale data a used-block map
   * must not depend on (default 0).
   */
  deletedFiles?: number;
}

/** Writes files of random content under `root` and returns their checksums (the deleted ones excluded). */
export async function fillWithFiles(root: string, options: FillOptions = {}): Promise<Checksums> {
  const fileCount = options.files ?? 20;
  const maxFileSize = options.maxFileSize ?? 256 * 1024;
  const directoryCount = Math.max(1, options.directories ?? 3);
  const checksums: Checksums = new Map();
  const dirs: string[] = [];
  for (let d = 0; d < directoryCount; d++) {
    const dir = d === 0 ? root : join(root, `dir${d}`);
    await mkdir(dir, { recursive: true });
    dirs.push(dir);
  }
  const write = async (path: string, index: number) => {
    // Spread sizes: some empty, some tiny, some that span many blocks and are not block-aligned.
    const size =
      index % 7 === 0 ? 0 : Math.floor((maxFileSize * ((index * 7919) % 1000)) / 1000) + (index % 13);
    const content = randomBytes(Math.min(size, maxFileSize));
    await writeFile(path, content);
    return content;
  };
  const doomed: string[] = [];
  for (let i = 0; i < (options.deletedFiles ?? 0); i++) {
    const path = join(dirs[i % dirs.length]!, `deleted-${i}.bin`);
    await write(path, i + 1);
    doomed.push(path);
  }
  for (let i = 0; i < fileCount; i++) {
    const path = join(dirs[i % dirs.length]!, `file-${i}.bin`);
    const content = await write(path, i);
    checksums.set(relative(root, path), createHash('sha256').update(content).digest('hex'));
  }
  for (const path of doomed) await unlink(path);
  return checksums;
}

/**
 * Writes one file of random bytes per size under `root` (f0, f1, …), each fsynced: its allocation is committed
 * (in the journal, where there is one) but need not be written home yet. Returns their checksums.
 */
export async function writeSyncedFiles(root: string, sizes: number[]): Promise<Checksums> {
  const checksums: Checksums = new Map();
  for (const [i, size] of sizes.entries()) {
    const content = randomBytes(size);
    const handle = await open(join(root, `f${i}`), 'w');
    await handle.writeFile(content);
    await handle.sync();
    await handle.close();
    checksums.set(`f${i}`, createHash('sha256').update(content).digest('hex'));
  }
  return checksums;
}

/** Checksums every regular file under `root` (same keys as fillWithFiles). */
export async function checksumTree(root: string): Promise<Checksums> {
  const checksums: Checksums = new Map();
  const walk = async (dir: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name === 'lost+found' || entry.name === 'System Volume Information') continue;
        await walk(path);
      } else if (entry.isFile()) {
        checksums.set(
          relative(root, path),
          createHash('sha256')
            .update(await readFile(path))
            .digest('hex'),
        );
      }
    }
  };
  await walk(root);
  return checksums;
}

const isFat = (kind: TestFilesystem) => kind === 'fat12' || kind === 'fat16' || kind === 'fat32';
// mtools refuses some valid geometries of small images unless told not to check.
const mtoolsEnv = { MTOOLS_SKIP_CHECK: '1', MTOOLS_NO_VFAT: '0' };

async function withStagingDir<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-stage-'));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function mcopyTreeInto(device: string, sourceDir: string, target: string): Promise<void> {
  const entries = await readdir(sourceDir);
  if (entries.length === 0) return;
  await runTool('mcopy', ['-s', '-o', '-i', device, ...entries.map((e) => join(sourceDir, e)), target], {
    env: mtoolsEnv,
  });
}

/**
 * Writes files of random content onto the file system on `device` and returns their checksums. Kernel file
 * systems are mounted; FAT is written with mtools (many kernels here lack vfat), NTFS through ntfs-3g, exFAT through exfat-fuse.
 */
export async function fillFilesystem(
  device: string,
  kind: TestFilesystem,
  options: FillOptions,
): Promise<Checksums> {
  if (kind === 'swap') return new Map();
  if (!isFat(kind)) return withMount(device, kind, (dir) => fillWithFiles(dir, options));
  return withStagingDir(async (stage) => {
    if (options.deletedFiles) {
      const doomed = join(stage, 'doomed');
      await fillWithFiles(join(doomed, 'trash'), {
        ...options,
        files: options.deletedFiles,
        deletedFiles: 0,
      });
      await mcopyTreeInto(device, doomed, '::/');
      await runTool('mdeltree', ['-i', device, '::/trash'], { env: mtoolsEnv });
    }
    const kept = join(stage, 'kept');
    const checksums = await fillWithFiles(kept, { ...options, deletedFiles: 0 });
    await mcopyTreeInto(device, kept, '::/');
    return checksums;
  });
}

/** Checksums every file on the file system on `device`, read-only (same keys as fillFilesystem). */
export async function readFilesystemChecksums(device: string, kind: TestFilesystem): Promise<Checksums> {
  if (kind === 'swap') return new Map();
  if (!isFat(kind)) return withMount(device, kind, checksumTree, { readOnly: true });
  return withStagingDir(async (stage) => {
    await runTool('mcopy', ['-s', '-n', '-i', device, '::/*', stage], { env: mtoolsEnv }).catch(
      (error: Error) => {
        // mcopy reports an empty root as "no match"; that is simply no files.
        if (!/no match|not found/i.test(error.message)) throw error;
      },
    );
    return checksumTree(stage);
  });
}

/** Runs the file system's own checker read-only; resolves with its output, rejects when it finds damage. */
export async function checkFilesystem(device: string, kind: TestFilesystem): Promise<string> {
  switch (kind) {
    case 'ext2':
    case 'ext3':
    case 'ext4':
      return (await runTool('e2fsck', ['-f', '-n', device])).stdout;
    case 'fat12':
    case 'fat16':
    case 'fat32':
      return (await runTool('fsck.vfat', ['-n', device])).stdout;
    case 'ntfs':
      return (await runTool('ntfsfix', ['--no-action', device])).stdout;
    case 'exfat':
      return (await runTool('fsck.exfat', ['-n', device])).stdout;
    case 'xfs':
      return (await runTool('xfs_repair', ['-n', device])).stdout;
    case 'btrfs':
      return (await runTool('btrfs', ['check', '--readonly', device])).stdout;
    case 'swap':
      return '';
  }
}
