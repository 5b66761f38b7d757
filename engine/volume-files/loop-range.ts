// Loop devices over a byte range of an image or a disk, and temporary mounts on them: how a file system inside
// a restored (or staged) disk is handed to its own tools (resize2fs, ntfsresize, btrfs, tune2fs, …). Every
// attach and mount is undone by the `with…` helpers, whatever the body does.
import { execFile } from 'node:child_process';
import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Runs a tool; a failure says which tool, its exit status and the last lines it printed. */
export async function runTool(
  command: string,
  args: string[],
  options: { input?: string | Buffer; okExits?: number[]; binary?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<{ stdout: string; stderr: string; status: number }> {
  return new Promise((resolve, reject) => {
    // binary: stdout is a Buffer (a file's bytes), handed on as it is.
    const encoding = (options.binary ? 'buffer' : 'utf8') as 'utf8';
    const child = execFile(
      command,
      args,
      { maxBuffer: 64 << 20, encoding, env: options.env ?? process.env },
      (error, stdout, stderr) => {
        const status = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        if (error && !(options.okExits ?? []).includes(status)) {
          const said = `${String(stderr)}\n${options.binary ? '' : String(stdout)}`
            .trim()
            .split('\n')
            .slice(-3)
            .join(' / ');
          const missing = (error as NodeJS.ErrnoException).code === 'ENOENT' ? ' (not installed)' : '';
          reject(
            new ToolError(
              `${command} ${args.join(' ')} failed${missing} (exit ${status}): ${said}`,
              String(stdout),
              String(stderr),
            ),
          );
        } else resolve({ stdout, stderr, status });
      },
    );
    // A tool that exits without reading its input closes the pipe: that is its exit status's business, not ours.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');
  });
}

export class ToolError extends Error {
  readonly stdout: string;
  readonly stderr: string;
  constructor(message: string, stdout: string, stderr: string) {
    super(message);
    this.name = 'ToolError';
    this.stdout = stdout;
    this.stderr = stderr;
  }
}

/** Attaches [offset, offset + size) of `path` as a loop device for the body, and detaches it afterwards. */
export async function withLoopRange<T>(
  path: string,
  offset: number,
  size: number,
  body: (device: string) => Promise<T>,
  options: { readOnly?: boolean } = {},
): Promise<T> {
  const args = ['--find', '--show', '--offset', String(offset), '--sizelimit', String(size)];
  if (options.readOnly) args.push('--read-only');
  const { stdout } = await exec('losetup', [...args, path]);
  const device = stdout.trim();
  try {
    return await body(device);
  } finally {
    await detachLoop(device);
  }
}

async function detachLoop(device: string): Promise<void> {
  // A device just unmounted can stay busy for a moment while the kernel lets go of it.
  for (let attempt = 0; ; attempt++) {
    try {
      await exec('losetup', ['--detach', device]);
      return;
    } catch (error) {
      if (attempt >= 50) throw error;
      await new Promise((resolve) => setImmediate(resolve));
      await exec('udevadm', ['settle']).catch(() => undefined);
    }
  }
}

/** Mounts `device` (type `type`) on a fresh directory for the body, then unmounts it and removes the directory. */
export async function withMount<T>(
  device: string,
  type: string,
  mountOptions: string[],
  body: (dir: string) => Promise<T>,
): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'diskline-fit-'));
  try {
    const args = ['-t', type];
    if (mountOptions.length) args.push('-o', mountOptions.join(','));
    if (type === 'ntfs')
      await exec('ntfs-3g', [...(mountOptions.length ? ['-o', mountOptions.join(',')] : []), device, dir]);
    else await exec('mount', [...args, device, dir]);
    try {
      return await body(dir);
    } finally {
      await exec('umount', [dir]);
    }
  } finally {
    await rmdir(dir).catch(() => undefined);
  }
}
