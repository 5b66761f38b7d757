// Runs the system tools test fixtures are built with (sfdisk, losetup, mkfs.*, mount) and tells a test
// why it must skip when the machine cannot do what it needs (not root, no loop devices, tool missing).
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface ToolResult {
  stdout: string;
  stderr: string;
}

/** Runs `command args…` (with extra `env`), feeding `input` on stdin; rejects with the tool's stderr when it exits non-zero. */
export function runTool(
  command: string,
  args: string[],
  options: { input?: string | Buffer; env?: Record<string, string> } = {},
): Promise<ToolResult> {
  const { input, env } = options;
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args,
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: env ? { ...process.env, ...env } : process.env },
      (error, stdout, stderr) => {
        if (error) {
          const status = (error as { code?: unknown }).code;
          reject(
            new Error(
              `${command} ${args.join(' ')} failed (${String(status)}): ${stderr.trim() || error.message}`,
            ),
          );
        } else resolve({ stdout, stderr });
      },
    );
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

const toolDirs = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** True when an executable named `name` is on the usual system paths. */
export function hasTool(name: string): boolean {
  return toolDirs.some((dir) => existsSync(`${dir}/${name}`));
}

let loopVerdict: string | null | undefined;

/**
 * Null when loop devices can be attached here (root, /dev/loop-control, losetup); otherwise the reason, for
 * `t.skip(reason)`. Checked once per process.
 */
export function loopUnavailableReason(): string | null {
  if (loopVerdict !== undefined) return loopVerdict;
  if (process.getuid?.() !== 0) loopVerdict = 'needs root to attach loop devices';
  else if (!existsSync('/dev/loop-control'))
    loopVerdict = 'no /dev/loop-control: the loop driver is not available';
  else if (!hasTool('losetup')) loopVerdict = 'losetup (util-linux) is not installed';
  else {
    const probe = spawnSync('losetup', ['--find'], { encoding: 'utf8' });
    loopVerdict = probe.status === 0 ? null : `losetup --find failed: ${probe.stderr.trim()}`;
  }
  return loopVerdict;
}

/** Null when every tool in `names` is installed; otherwise which one is missing, for `t.skip`. */
export function missingToolReason(...names: string[]): string | null {
  const missing = names.filter((n) => !hasTool(n));
  return missing.length ? `not installed: ${missing.join(', ')}` : null;
}
